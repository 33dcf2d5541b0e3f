"""Sparse row operations of TopK SAEs, with custom VJPs that scatter-add B·K rows instead of
transposing dense (B, L) matrices:

    gather_sum(w, idx, v)[b] = Σ_j v[b, j] · w[idx[b, j]]        (L, d), (B, K), (B, K) → (B, d)
    gather_dot(w, idx, y)[b, j] = w[idx[b, j]] · y[b]             (L, d), (B, K), (B, d) → (B, K)

Two implementations of the same sums (``impl``):

- ``"scan"``: a scan over the K columns, one (B, d) gather or scatter per step; never a
  (B, K, d) tensor, and each step's rows stay in cache. The CPU choice.
- ``"batched"``: one gather of all (B, K, d) rows and one scatter-add. A few large kernels
  instead of K sequential loop steps: on a GPU every step of a loop is separate kernel launches
  plus XLA's loop-predicate round trip, and a train step runs ~10 such loops (k = 32, AuxK
  k_aux = d/2). Memory B·K·d.
- ``"auto"``: "scan" on the CPU backend, "batched" elsewhere.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

IMPLS = ("auto", "scan", "batched")


def resolve(impl: str) -> str:
    """"scan" or "batched" for `impl` on the current default backend."""
    if impl not in IMPLS:
        raise ValueError(f"sparse_impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        return "scan" if jax.default_backend() == "cpu" else "batched"
    return impl


def _scatter_outer(idx: jax.Array, v: jax.Array, y: jax.Array, n_rows: int, impl: str) -> jax.Array:
    """(L, d) zeros with row idx[b, j] += v[b, j] · y[b]."""
    init = jnp.zeros((n_rows, y.shape[-1]), y.dtype)
    if impl == "batched":
        return init.at[idx.reshape(-1)].add((v[:, :, None] * y[:, None, :]).reshape(-1, y.shape[-1]))

    def body(acc, cols):
        i_j, v_j = cols  # (B,), (B,)
        return acc.at[i_j].add(v_j[:, None] * y), None

    return jax.lax.scan(body, init, (idx.T, v.T))[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _gather_sum(w: jax.Array, idx: jax.Array, v: jax.Array, impl: str) -> jax.Array:
    if impl == "batched":
        return jnp.einsum("bk,bkd->bd", v, jnp.take(w, idx, axis=0))

    def body(acc, cols):
        i_j, v_j = cols
        return acc + v_j[:, None] * jnp.take(w, i_j, axis=0), None

    init = jnp.zeros((idx.shape[0], w.shape[-1]), jnp.result_type(w, v))
    return jax.lax.scan(body, init, (idx.T, v.T))[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _gather_dot(w: jax.Array, idx: jax.Array, y: jax.Array, impl: str) -> jax.Array:
    if impl == "batched":
        return jnp.einsum("bkd,bd->bk", jnp.take(w, idx, axis=0), y)

    def body(_, i_j):
        return None, jnp.sum(jnp.take(w, i_j, axis=0) * y, axis=-1)

    return jax.lax.scan(body, None, idx.T)[1].T


def _gather_sum_fwd(w, idx, v, impl):
    return _gather_sum(w, idx, v, impl), (w, idx, v)


def _gather_sum_bwd(impl, res, g):  # g (B, d)
    w, idx, v = res
    return _scatter_outer(idx, v, g, w.shape[0], impl), None, _gather_dot(w, idx, g, impl)


def _gather_dot_fwd(w, idx, y, impl):
    return _gather_dot(w, idx, y, impl), (w, idx, y)


def _gather_dot_bwd(impl, res, g):  # g (B, K)
    w, idx, y = res
    return _scatter_outer(idx, g, y, w.shape[0], impl), None, _gather_sum(w, idx, g, impl)


_gather_sum.defvjp(_gather_sum_fwd, _gather_sum_bwd)
_gather_dot.defvjp(_gather_dot_fwd, _gather_dot_bwd)


def gather_sum(w: jax.Array, idx: jax.Array, v: jax.Array, impl: str = "auto") -> jax.Array:
    """Σ_j v[b, j] · w[idx[b, j]]: (L, d), (B, K), (B, K) → (B, d)."""
    return _gather_sum(w, idx, v, resolve(impl))


def gather_dot(w: jax.Array, idx: jax.Array, y: jax.Array, impl: str = "auto") -> jax.Array:
    """w[idx[b, j]] · y[b]: (L, d), (B, K), (B, d) → (B, K); the transpose of gather_sum."""
    return _gather_dot(w, idx, y, resolve(impl))
