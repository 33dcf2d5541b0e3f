"""wav2vec 2.0 / HuBERT span masking in JAX: fixed shapes, padding-aware, jit-able.

Each row draws ``n = floor(p · L + u)`` span starts (u ~ U[0, 1): stochastic rounding,
so E[n] = p · L) without replacement among the L − span + 1 positions whose span stays
inside the row's L real frames, then masks ``span`` frames from every start; spans may
overlap, so the masked fraction is below p · span (≈ 1 − (1 − p)^span ≈ 57 % for
p = 0.08, span = 10 without the edge effects).

``p`` is the probability of a frame starting a span, as in the papers (HuBERT p = 8 %,
wav2vec 2.0 6.5 %). fairseq's and transformers' ``mask_prob`` / ``mask_time_prob`` is
p × span (0.8 for HuBERT pre-training).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def span_mask(key: jax.Array, valid: jax.Array, mask_prob: float = 0.08, span: int = 10,
              min_spans: int = 2) -> jax.Array:
    """(B, T) bool mask of frames to hide.

    valid: (B, T) bool, True on real frames (right padding: each row's real frames come
    first). min_spans: at least this many spans per row where the row has room.
    """
    b, t = valid.shape
    lengths = valid.astype(jnp.int32).sum(-1)                                 # (B,)
    k_round, k_pick = jax.random.split(key)
    room = jnp.maximum(lengths - span + 1, 0)                                  # possible starts per row
    n = jnp.floor(mask_prob * lengths + jax.random.uniform(k_round, (b,))).astype(jnp.int32)
    n = jnp.minimum(jnp.maximum(n, min_spans), room)                           # (B,)
    # Uniform sampling without replacement: rank random scores among the allowed starts.
    allowed = jnp.arange(t)[None, :] < room[:, None]                           # (B, T)
    scores = jnp.where(allowed, jax.random.uniform(k_pick, (b, t)), 2.0)
    rank = jnp.argsort(jnp.argsort(scores, axis=-1), axis=-1)                  # (B, T) 0 = smallest score
    starts = (rank < n[:, None]) & allowed                                     # (B, T)
    # Frame i is masked if a span starts in (i − span, i]: a windowed count of starts.
    c = jnp.cumsum(starts.astype(jnp.int32), axis=-1)                          # (B, T)
    shifted = jnp.pad(c, ((0, 0), (span, 0)))[:, :t]                           # c[i − span], 0 before the row
    return ((c - shifted) > 0) & valid
