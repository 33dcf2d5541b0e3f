"""Matmuls that XLA's CPU backend runs on its fast GEMM path, forward and backward.

XLA's CPU backend sends only "canonical" dots, row-major (M, K) @ (K, N), to its fast GEMM
library; the transposed dots of a backward pass run on slower generic kernels.
``canonical_matmul`` materialises the transposes its backward needs (behind an
optimisation barrier so XLA cannot fold them back), and ``canonical_dot_general`` plugs it
into ``nn.Dense``. Same parameters and the same sums up to float32 reordering; models
switch it on for the CPU only (accelerators do not need it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["row_major_t", "canonical_matmul", "canonical_dot_general"]


def row_major_t(a: jax.Array) -> jax.Array:
    """aᵀ of a 2-D array, stored row-major: the barrier keeps XLA from folding it into a dot."""
    return jax.lax.optimization_barrier(a.T)


@jax.custom_vjp
def canonical_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """x (M, K) @ w (K, N) whose backward dots, g wᵀ and xᵀ g, are canonical too."""
    return jnp.dot(x, w)


def _fwd(x, w):
    return jnp.dot(x, w), (x, w)


def _bwd(res, g):
    x, w = res
    return jnp.dot(g, row_major_t(w)).astype(x.dtype), jnp.dot(row_major_t(x), g).astype(w.dtype)


canonical_matmul.defvjp(_fwd, _bwd)


def canonical_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """``lax.dot_general`` for nn.Dense (x (..., K) · W (K, N)) through canonical_matmul;
    any other contraction falls through to ``lax.dot_general``."""
    (lc, rc), (lb, rb) = dimension_numbers
    if (tuple(lc) == (lhs.ndim - 1,) and tuple(rc) == (0,) and not lb and not rb and rhs.ndim == 2
            and preferred_element_type is None):
        out = canonical_matmul(lhs.reshape(-1, lhs.shape[-1]), rhs)            # (M, N)
        return out.reshape(lhs.shape[:-1] + rhs.shape[1:])
    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision, preferred_element_type)
