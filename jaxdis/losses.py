"""Losses shared by the utterance-level objectives (ECAPA, Learn2Diss §3.2.3).

- ``info_nce``: SimCLR's NT-Xent between two views of each item (Learn2Diss eq. 5).
- ``softmax_ce``: cross-entropy on integer labels, e.g. k-means pseudo-labels (eq. 6).
- ``aam_softmax``: additive angular margin softmax (ArcFace; ECAPA's supervised loss).

Each returns (mean loss, metrics dict); all are pure and jit/grad-friendly.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

Array = jax.Array


def l2_normalize(x: Array, eps: float = 1e-12) -> Array:
    """Rows of x scaled to unit L2 norm."""
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


def info_nce(z1: Array, z2: Array, temperature: float = 0.1) -> tuple[Array, dict[str, Array]]:
    """NT-Xent over 2B views: each view's positive is the other view of the same item, its
    negatives the other 2B − 2 views of the batch; similarity cos/τ.

    z1, z2: (B, D), row i of both from item i. Learn2Diss eq. 5 writes it with τ = 1; the
    positive is counted in the denominator, as in SimCLR. Metric ``acc``: how often the
    positive is the most similar of the 2B − 1 candidates.
    """
    b = z1.shape[0]
    z = l2_normalize(jnp.concatenate([z1, z2], axis=0).astype(jnp.float32))  # (2B, D)
    sim = z @ z.T / temperature                                              # (2B, 2B)
    sim = jnp.where(jnp.eye(2 * b, dtype=bool), -jnp.inf, sim)               # a view is not its own candidate
    pos = jnp.concatenate([jnp.arange(b, 2 * b), jnp.arange(b)])             # (2B,)
    loss = optax.softmax_cross_entropy_with_integer_labels(sim, pos)
    acc = jnp.mean((jnp.argmax(sim, axis=-1) == pos).astype(jnp.float32))
    return jnp.mean(loss), {"nce_acc": acc}


def softmax_ce(logits: Array, labels: Array) -> tuple[Array, dict[str, Array]]:
    """Mean cross-entropy of logits (N, K) against integer labels (N,); metric ``acc``."""
    logits = logits.astype(jnp.float32)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    acc = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
    return jnp.mean(loss), {"acc": acc}


def cosine_logits(embeddings: Array, weights: Array) -> Array:
    """(N, K) cosines between embeddings (N, D) and class weight vectors (K, D)."""
    return l2_normalize(embeddings.astype(jnp.float32)) @ l2_normalize(weights.astype(jnp.float32)).T


def aam_softmax(embeddings: Array, weights: Array, labels: Array, margin: float = 0.2,
                scale: float = 30.0) -> tuple[Array, dict[str, Array]]:
    """Additive angular margin softmax: the target logit is s·cos(θ + m), the others s·cos θ.

    For θ + m > π, where cos(θ + m) would stop decreasing, the target logit is
    s·(cos θ − m·sin m) instead (the usual ArcFace/speechbrain fallback, no "easy margin").
    weights: (K, D) class vectors. Metric ``acc``: top-1 of the plain cosines.
    """
    cos = jnp.clip(cosine_logits(embeddings, weights), -1.0 + 1e-7, 1.0 - 1e-7)  # (N, K)
    sin = jnp.sqrt(1.0 - cos * cos)
    phi = cos * math.cos(margin) - sin * math.sin(margin)                    # cos(θ + m)
    phi = jnp.where(cos > math.cos(math.pi - margin), phi, cos - math.sin(math.pi - margin) * margin)
    target = jax.nn.one_hot(labels, cos.shape[-1], dtype=bool)
    logits = scale * jnp.where(target, phi, cos)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    acc = jnp.mean((jnp.argmax(cos, axis=-1) == labels).astype(jnp.float32))
    return jnp.mean(loss), {"acc": acc}
