"""Minibatch k-means in JAX (Sculley 2010, with sklearn's per-centre step sizes).

    km = fit(jax.random.PRNGKey(0), feats, k=100)            # feats (N, D) host or device array
    labels = predict(km.centroids, feats)                      # (N,) int32

Deterministic from the key. Init by k-means++ (D² sampling, on a sample of the data) or
random distinct rows. Each step draws a minibatch, assigns it to the nearest centres and
moves centre c towards the mean of its points with step n_c / N_c, where N_c counts every
point c has received. Centres that win no point for ``reassign_after`` consecutive
steps are moved to random points of the current minibatch, so dead centres revive.
Distances use ‖x‖² − 2 x·c + ‖c‖²: one matmul, GPU-friendly; rows are processed in
chunks so large N never builds an N × K matrix at once.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class KMeans(NamedTuple):
    centroids: jax.Array   # (K, D)
    counts: jax.Array      # (K,) points each centre has absorbed during fitting
    inertia: float         # mean squared distance of the fitting data to its nearest centre


def _sq_dists(x: jax.Array, c: jax.Array, c_sq: jax.Array | None = None) -> jax.Array:
    """(N, K) squared Euclidean distances, clipped at 0 against rounding."""
    c_sq = jnp.sum(c * c, axis=-1) if c_sq is None else c_sq
    d = jnp.sum(x * x, axis=-1, keepdims=True) - 2.0 * x @ c.T + c_sq[None, :]
    return jnp.maximum(d, 0.0)


@partial(jax.jit, static_argnames=("k",))
def kmeans_plus_plus(key: jax.Array, x: jax.Array, k: int) -> jax.Array:
    """(K, D) centres by D² sampling from the rows of x (N, D)."""
    n = x.shape[0]
    k0, key = jax.random.split(key)
    first = x[jax.random.randint(k0, (), 0, n)]
    centres = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first)
    d2 = jnp.sum((x - first) ** 2, axis=-1)                                    # (N,) distance to the nearest centre

    def body(i, carry):
        centres, d2, key = carry
        key, sub = jax.random.split(key)
        total = jnp.sum(d2)
        # All points coincide with a centre: fall back to a uniform draw.
        p = jnp.where(total > 0, d2 / jnp.where(total > 0, total, 1.0), 1.0 / n)
        idx = jax.random.choice(sub, n, p=p)
        c = x[idx]
        return centres.at[i].set(c), jnp.minimum(d2, jnp.sum((x - c) ** 2, axis=-1)), key

    centres, _, _ = jax.lax.fori_loop(1, k, body, (centres, d2, key))
    return centres


def kmeans_random(key: jax.Array, x: jax.Array, k: int) -> jax.Array:
    """(K, D) distinct random rows of x."""
    return x[jax.random.choice(key, x.shape[0], (k,), replace=False)]


@partial(jax.jit, static_argnames=("batch_size", "steps", "reassign_after"))
def _fit_steps(key, x, centroids, batch_size: int, steps: int, reassign_after: int):
    n = x.shape[0]
    k = centroids.shape[0]

    def step(carry, key):
        centroids, counts, idle = carry
        k_batch, k_new = jax.random.split(key)
        batch = x[jax.random.randint(k_batch, (batch_size,), 0, n)]                       # (b, D)
        assign = jnp.argmin(_sq_dists(batch, centroids), axis=-1)                         # (b,)
        onehot = jax.nn.one_hot(assign, k, dtype=x.dtype)                                 # (b, K)
        n_c = onehot.sum(0)                                                                # (K,)
        sums = onehot.T @ batch                                                            # (K, D)
        counts = counts + n_c
        lr = jnp.where(n_c > 0, n_c / jnp.maximum(counts, 1.0), 0.0)                       # (K,)
        mean = sums / jnp.maximum(n_c, 1.0)[:, None]
        centroids = centroids + lr[:, None] * (mean - centroids)
        # Revive centres idle for too long at random minibatch points (fresh counts).
        idle = jnp.where(n_c > 0, 0, idle + 1)
        dead = idle >= reassign_after
        fresh = batch[jax.random.randint(k_new, (k,), 0, batch_size)]
        centroids = jnp.where(dead[:, None], fresh, centroids)
        counts = jnp.where(dead, 0.0, counts)
        idle = jnp.where(dead, 0, idle)
        return (centroids, counts, idle), None

    init = (centroids, jnp.zeros((k,), x.dtype), jnp.zeros((k,), jnp.int32))
    (centroids, counts, _), _ = jax.lax.scan(step, init, jax.random.split(key, steps))
    return centroids, counts


def fit(key: jax.Array, x, k: int, *, steps: int = 200, batch_size: int = 4096, init: str = "kmeans++",
        init_size: int | None = None, reassign_after: int = 20) -> KMeans:
    """Minibatch k-means on the rows of x (N, D). init: "kmeans++" or "random";
    init_size: rows sampled for the init (default min(N, max(3 · batch_size, 3 · k)))."""
    x = jnp.asarray(x, jnp.float32)
    n = x.shape[0]
    if n < k:
        raise ValueError(f"{n} points cannot make {k} clusters")
    k_sample, k_init, k_fit = jax.random.split(key, 3)
    size = min(n, init_size or max(3 * batch_size, 3 * k))
    sample = x if size == n else x[jax.random.choice(k_sample, n, (size,), replace=False)]
    if init == "kmeans++":
        centroids = kmeans_plus_plus(k_init, sample, k)
    elif init == "random":
        centroids = kmeans_random(k_init, sample, k)
    else:
        raise ValueError(f"unknown init {init!r}; use kmeans++ or random")
    centroids, counts = _fit_steps(k_fit, x, centroids, min(batch_size, n), steps, reassign_after)
    return KMeans(centroids, counts, float(inertia(centroids, x)))


def _chunked(fn, x: jax.Array, chunk: int):
    """fn over row chunks of x (padded to a multiple of chunk), concatenated."""
    n = x.shape[0]
    chunk = min(chunk, max(n, 1))
    pad = (-n) % chunk
    xp = jnp.pad(x, ((0, pad), (0, 0))).reshape(-1, chunk, x.shape[1])
    return jax.lax.map(fn, xp).reshape((-1,) + jax.eval_shape(fn, xp[0]).shape[1:])[:n]


@partial(jax.jit, static_argnames=("chunk",))
def predict(centroids: jax.Array, x: jax.Array, chunk: int = 16384) -> jax.Array:
    """(N,) int32 index of the nearest centre for each row of x (N, D)."""
    c_sq = jnp.sum(centroids * centroids, axis=-1)
    x = jnp.asarray(x, centroids.dtype)
    return _chunked(lambda b: jnp.argmin(_sq_dists(b, centroids, c_sq), axis=-1).astype(jnp.int32), x, chunk)


@partial(jax.jit, static_argnames=("chunk",))
def inertia(centroids: jax.Array, x: jax.Array, chunk: int = 16384) -> jax.Array:
    """Mean squared distance of the rows of x to their nearest centre."""
    c_sq = jnp.sum(centroids * centroids, axis=-1)
    x = jnp.asarray(x, centroids.dtype)
    d = _chunked(lambda b: jnp.min(_sq_dists(b, centroids, c_sq), axis=-1), x, chunk)
    return jnp.mean(d)


def fit_predict(key: jax.Array, x, k: int, **kwargs) -> tuple[KMeans, np.ndarray]:
    km = fit(key, x, k, **kwargs)
    return km, np.asarray(predict(km.centroids, jnp.asarray(x, jnp.float32)))
