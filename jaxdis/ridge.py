"""Closed-form multi-output ridge regression on device, with scikit-learn's semantics.

``fit(x, y, alpha)`` matches ``sklearn.linear_model.Ridge(alpha).fit(x, y)``: x and y are
centred, the intercept is not penalised, coef minimises ||Yc - Xc W||² + alpha ||W||².
Primal (n >= d): Cholesky of XcᵀXc + alpha I; dual (n < d): Cholesky of XcXcᵀ + alpha I.
``ridge_cv`` matches ``RidgeCV``: efficient leave-one-out (``cv=None``, score -mean squared
LOO error) or K-fold (``cv=K``, unshuffled folds, mean R² over folds), many alphas from one
eigendecomposition per fit. ``residualize`` returns y - predict(x), on the fitted rows or any
others (out-of-sample).

Large n: the sufficient statistics (``Moments``: count, sums, XᵀX, XᵀY, per-column YᵀY of
shifted data) are accumulated in row blocks and are additive, so shards add up: on a mesh,
``sharded_moments`` is a ``shard_map`` whose partial sums are ``psum``-ed. Only the upper
block triangle of the symmetric XᵀX is multiplied (``gram_blocks`` column blocks: the
diagonal blocks plus those above), which saves up to half of the Gram FLOPs.

Precision: float32 by default. ``precision="float64"`` runs the whole computation inside
``jax.enable_x64(True)`` (a context manager: the flag does not leak to the caller) and
returns NumPy float64 arrays; float32 results are JAX arrays on the default device.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_factor, cho_solve

GRAM_BLOCK = 512        # target width of the column blocks of XᵀX (upper triangle only)


class Moments(NamedTuple):
    """Sufficient statistics of shifted data: z = x - shift_x, w = y - shift_y (a pytree)."""

    n: jax.Array          # ()       rows seen
    shift_x: jax.Array    # (d,)     subtracted before accumulating (a pilot mean keeps float32 exact)
    shift_y: jax.Array    # (k,)
    sum_x: jax.Array      # (d,)     Σ z
    sum_y: jax.Array      # (k,)     Σ w
    xx: jax.Array         # (d, d)   Σ z zᵀ
    xy: jax.Array         # (d, k)   Σ z wᵀ
    yy: jax.Array         # (k,)     Σ w²  per column


class RidgeFit(NamedTuple):
    """y ≈ x @ coef + intercept (coef is (d, k): the transpose of sklearn's coef_)."""

    coef: jax.Array       # (d, k)
    intercept: jax.Array  # (k,)
    alpha: jax.Array      # () or (k,)


class RidgeCVResult(NamedTuple):
    fit: RidgeFit         # refitted on all rows with the chosen alpha
    alpha: jax.Array      # () chosen alpha, or (k,) with alpha_per_target
    alphas: jax.Array     # (A,)
    scores: jax.Array     # (A,) or (A, k): -mean squared LOO error (cv=None) or mean R² (K-fold)


# ------------------------------------------------------------------------------ precision


def _x64(precision: str):
    """A context for the dtype asked for: nothing for float32, x64 switched on for float64."""
    if precision not in ("float32", "float64"):
        raise ValueError(f"precision must be 'float32' or 'float64', got {precision!r}")
    return jax.enable_x64(True) if precision == "float64" else contextlib.nullcontext()


def _dtype(precision: str):
    return jnp.float64 if precision == "float64" else jnp.float32


def _out(tree, precision: str):
    """float64 results leave the x64 context as NumPy arrays (JAX would narrow them outside)."""
    return jax.tree.map(np.asarray, tree) if precision == "float64" else tree


def _check_xy(x, y, name_x: str = "x", name_y: str = "y") -> tuple[int, int, int]:
    """(n, d, k); clear errors for wrong ranks or row counts (NaNs are checked by callers that copy)."""
    if np.ndim(x) != 2:
        raise ValueError(f"{name_x} must be 2-D (n, d), got shape {np.shape(x)}")
    if np.ndim(y) not in (1, 2):
        raise ValueError(f"{name_y} must be 1-D or 2-D (n, k), got shape {np.shape(y)}")
    if np.shape(x)[0] != np.shape(y)[0]:
        raise ValueError(f"{name_x} has {np.shape(x)[0]} rows but {name_y} has {np.shape(y)[0]}")
    if np.shape(x)[0] < 2:
        raise ValueError(f"ridge needs at least 2 rows, got {np.shape(x)[0]}")
    return np.shape(x)[0], np.shape(x)[1], (1 if np.ndim(y) == 1 else np.shape(y)[1])


def _finite(a, name: str) -> None:
    if not bool(jnp.isfinite(a).all()):
        raise ValueError(f"{name} has NaN or inf values")


# ------------------------------------------------------------------------- Gram, moments


def block_edges(d: int, block: int = GRAM_BLOCK) -> tuple[int, ...]:
    """Column-block boundaries of a d-wide Gram: ~`block` wide, multiples of 128 when d allows."""
    nb = max(1, round(d / block))
    width = math.ceil(d / nb)
    if d >= 128 * nb:
        width = 128 * math.ceil(width / 128)
    return tuple(range(0, d, width)) + (d,)


def gram_upper(z: jax.Array, w: jax.Array, edges: Sequence[int]) -> tuple[jax.Array, ...]:
    """Row-blocks of [zᵀz | zᵀw], upper block triangle only: block i is (b_i, d - e_i + k).

    z (R, d), w (R, k). The lower blocks of zᵀz are transposes of upper ones; `assemble`
    restores the full matrix."""
    zw = jnp.concatenate([z, w], axis=1)                                  # (R, d + k)
    rows = []
    for a, b in zip(edges[:-1], edges[1:]):
        rows.append(jax.lax.dot_general(zw[:, a:b], zw[:, a:], (((0,), (0,)), ((), ()))))  # (b-a, d+k-a)
    return tuple(rows)


def assemble(rows: Sequence[jax.Array], edges: Sequence[int]) -> tuple[jax.Array, jax.Array]:
    """(zᵀz (d, d), zᵀw (d, k)) from the upper block rows of `gram_upper`."""
    d = edges[-1]
    blocks = {}
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        for j in range(i, len(edges) - 1):
            c, e = edges[j], edges[j + 1]
            blocks[i, j] = rows[i][:, c - a:e - a]
    full = [jnp.concatenate([blocks[i, j] if j >= i else blocks[j, i].T for j in range(len(edges) - 1)], axis=1)
            for i in range(len(edges) - 1)]
    xy = jnp.concatenate([r[:, d - a:] for r, a in zip(rows, edges[:-1])], axis=0)
    return jnp.concatenate(full, axis=0), xy


def _zero_rows(edges: Sequence[int], k: int, dtype) -> tuple[jax.Array, ...]:
    d = edges[-1]
    return tuple(jnp.zeros((b - a, d + k - a), dtype) for a, b in zip(edges[:-1], edges[1:]))


@functools.partial(jax.jit, static_argnames=("edges", "block_rows"))
def _moments_jit(x, y, shift_x, shift_y, mask, edges, block_rows):
    """Moments of rows with mask 1 (masked rows add nothing), accumulated over row blocks."""
    n, d = x.shape
    dtype = shift_x.dtype

    def block(xb, yb, mb):
        z = (xb.astype(dtype) - shift_x) * mb[:, None]                    # (R, d)
        w = (yb.astype(dtype) - shift_y) * mb[:, None]                    # (R, k)
        return z.sum(0), w.sum(0), (w * w).sum(0), gram_upper(z, w, edges)

    if block_rows is None or block_rows >= n:
        sx, sy, yy, rows = block(x, y, mask)
    else:
        nblk = n // block_rows                                            # n is padded to a multiple

        def body(i, acc):
            s = i * block_rows
            xb = jax.lax.dynamic_slice_in_dim(x, s, block_rows)
            yb = jax.lax.dynamic_slice_in_dim(y, s, block_rows)
            mb = jax.lax.dynamic_slice_in_dim(mask, s, block_rows)
            return jax.tree.map(jnp.add, acc, block(xb, yb, mb))

        k = y.shape[1]
        init = (jnp.zeros(d, dtype), jnp.zeros(k, dtype), jnp.zeros(k, dtype), _zero_rows(edges, k, dtype))
        sx, sy, yy, rows = jax.lax.fori_loop(0, nblk, body, init)
    xx, xy = assemble(rows, edges)
    return Moments(mask.sum().astype(dtype), shift_x, shift_y, sx, sy, xx, xy, yy)


def _pad_rows(a: jax.Array, multiple: int) -> jax.Array:
    extra = (-a.shape[0]) % multiple
    return a if extra == 0 else jnp.pad(a, [(0, extra)] + [(0, 0)] * (a.ndim - 1))


def moments(x, y, *, shift: tuple | None = None, block_rows: int | None = None,
            gram_block: int = GRAM_BLOCK, precision: str = "float32") -> Moments:
    """Moments of (x (n, d), y (n, k)) on device; rows accumulated `block_rows` at a time.

    The shift defaults to the column means (so the stored sums are ~0 and centring loses
    nothing in float32). Call inside the precision's context when combining by hand."""
    y = y[:, None] if np.ndim(y) == 1 else y
    n, d, k = _check_xy(x, y)
    dtype = _dtype(precision)
    x, y = jnp.asarray(x), jnp.asarray(y)
    if shift is None:
        shift = (x.mean(0, dtype=dtype), y.mean(0, dtype=dtype))
    shift_x, shift_y = (jnp.asarray(s, dtype) for s in shift)
    mask = jnp.ones(n, dtype)
    if block_rows is not None and block_rows < n:
        x, y, mask = (_pad_rows(a, block_rows) for a in (x, y, mask))
    return _moments_jit(x, y, shift_x, shift_y, mask, block_edges(d, gram_block), block_rows)


def merge(a: Moments, b: Moments) -> Moments:
    """Moments of the union of two row sets accumulated with the same shift."""
    return Moments(a.n + b.n, a.shift_x, a.shift_y, *(jnp.add(u, v) for u, v in zip(a[3:], b[3:])))


def stream_moments(blocks: Iterable[tuple[np.ndarray, np.ndarray]], *, gram_block: int = GRAM_BLOCK,
                   precision: str = "float32") -> Moments:
    """Moments of row blocks (x_b, y_b) from the host, e.g. a memory-mapped file: never all on device.

    The first block's means are the shift for every block (a pilot mean keeps the float32
    sums small)."""
    total = None
    with _x64(precision):
        for xb, yb in blocks:
            yb = yb[:, None] if np.ndim(yb) == 1 else yb
            if total is None:
                dtype = _dtype(precision)
                shift = (jnp.asarray(np.mean(xb, 0), dtype), jnp.asarray(np.mean(yb, 0), dtype))
                total = moments(xb, yb, shift=shift, gram_block=gram_block, precision=precision)
            else:
                total = merge(total, moments(xb, yb, shift=(total.shift_x, total.shift_y), gram_block=gram_block,
                                             precision=precision))
        if total is None:
            raise ValueError("stream_moments: no blocks")
        return _out(total, precision)


def sharded_moments(x: jax.Array, y: jax.Array, mesh: jax.sharding.Mesh, axis: str = "data", *,
                    gram_block: int = GRAM_BLOCK, precision: str = "float32") -> Moments:
    """Moments of rows sharded over `axis` of `mesh`: each device sums its shard, then psum.

    Two passes: the global column means (a psum of sums) are the shift, then the shifted
    products. Rows are padded with masked zeros to a multiple of the axis size."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    y = y[:, None] if np.ndim(y) == 1 else y
    n, d, k = _check_xy(x, y)
    edges = block_edges(d, gram_block)
    with _x64(precision):
        dtype = _dtype(precision)
        size = mesh.shape[axis]
        rows = NamedSharding(mesh, P(axis))
        x, y, mask = (jax.device_put(_pad_rows(jnp.asarray(a), size), rows)
                      for a in (x, y, jnp.ones(n, dtype)))

        @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P(axis), P(axis), P(axis)), out_specs=P())
        def per_shard(xs, ys, ms):
            total = jax.lax.psum(ms.sum(), axis)
            mean_x = jax.lax.psum((xs.astype(dtype) * ms[:, None]).sum(0), axis) / total
            mean_y = jax.lax.psum((ys.astype(dtype) * ms[:, None]).sum(0), axis) / total
            local = _moments_jit(xs, ys, mean_x, mean_y, ms, edges, None)
            return Moments(total, mean_x, mean_y, *(jax.lax.psum(a, axis) for a in local[3:]))

        return _out(jax.jit(per_shard)(x, y, mask), precision)


def centred(m: Moments) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(mean_x (d,), mean_y (k,), XcᵀXc (d, d), XcᵀYc (d, k)) from shifted moments."""
    mz, mw = m.sum_x / m.n, m.sum_y / m.n
    cxx = m.xx - m.n * jnp.outer(mz, mz)
    cxy = m.xy - m.n * jnp.outer(mz, mw)
    return m.shift_x + mz, m.shift_y + mw, cxx, cxy


# ---------------------------------------------------------------------------------- fit


def _alpha_array(alpha, k: int, dtype) -> jax.Array:
    a = jnp.asarray(alpha, dtype)
    if a.ndim not in (0, 1) or (a.ndim == 1 and a.shape[0] not in (1, k)):
        raise ValueError(f"alpha must be a number or one per target ({k}), got shape {a.shape}")
    if bool((a < 0).any()):
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    return a.reshape(()) if a.size == 1 else a


@jax.jit
def _solve_primal(cxx, cxy, alpha):
    """(XcᵀXc + alpha I)⁻¹ XcᵀYc by Cholesky; alpha () or per target (k,) by one eigh."""
    d = cxx.shape[0]
    if alpha.ndim == 0:
        return cho_solve(cho_factor(cxx + alpha * jnp.eye(d, dtype=cxx.dtype)), cxy)
    lam, v = jnp.linalg.eigh(cxx)
    return v @ ((v.T @ cxy) / (lam[:, None] + alpha[None, :]))


@jax.jit
def _solve_dual(xc, yc, alpha):
    """Xcᵀ (XcXcᵀ + alpha I)⁻¹ Yc by Cholesky of the n × n kernel; alpha () or (k,)."""
    n = xc.shape[0]
    kern = xc @ xc.T                                                       # (n, n)
    if alpha.ndim == 0:
        dual = cho_solve(cho_factor(kern + alpha * jnp.eye(n, dtype=xc.dtype)), yc)
    else:
        lam, u = jnp.linalg.eigh(kern)
        dual = u @ ((u.T @ yc) / (lam[:, None] + alpha[None, :]))
    return xc.T @ dual                                                     # (d, k)


def fit_moments(m: Moments, alpha=1.0, *, precision: str | None = None) -> RidgeFit:
    """Primal ridge from moments (any n, any number of shards or blocks)."""
    precision = precision or ("float64" if np.asarray(m.xx).dtype == np.float64 else "float32")
    with _x64(precision):
        m = jax.tree.map(lambda a: jnp.asarray(a, _dtype(precision)), m)
        mean_x, mean_y, cxx, cxy = centred(m)
        a = _alpha_array(alpha, cxy.shape[1], cxx.dtype)
        coef = _solve_primal(cxx, cxy, a)
        _finite(coef, "ridge coefficients (is alpha 0 with a singular XᵀX?)")
        return _out(RidgeFit(coef, mean_y - mean_x @ coef, a), precision)


def fit(x, y, alpha=1.0, *, solver: str = "auto", block_rows: int | None = None, gram_block: int = GRAM_BLOCK,
        precision: str = "float32") -> RidgeFit:
    """sklearn ``Ridge(alpha).fit(x, y)``: primal when n >= d (or solver="primal"), else dual.

    alpha: a number or one per target. y (n,) is treated as (n, 1)."""
    y = y[:, None] if np.ndim(y) == 1 else y
    n, d, k = _check_xy(x, y)
    if solver == "auto":
        solver = "primal" if n >= d else "dual"
    if solver not in ("primal", "dual"):
        raise ValueError(f"solver must be 'auto', 'primal' or 'dual', got {solver!r}")
    with _x64(precision):
        dtype = _dtype(precision)
        x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
        _finite(x, "x")
        _finite(y, "y")
        if solver == "primal":
            m = moments(x, y, block_rows=block_rows, gram_block=gram_block, precision=precision)
            return fit_moments(m, alpha, precision=precision)
        mean_x, mean_y = x.mean(0), y.mean(0)
        a = _alpha_array(alpha, k, dtype)
        coef = _solve_dual(x - mean_x, y - mean_y, a)
        _finite(coef, "ridge coefficients (is alpha 0 with a singular kernel?)")
        return _out(RidgeFit(coef, mean_y - mean_x @ coef, a), precision)


def predict(model: RidgeFit, x) -> jax.Array:
    """x (n, d) @ coef + intercept -> (n, k), in the model's precision."""
    if isinstance(model.coef, np.ndarray) and model.coef.dtype == np.float64:
        return np.asarray(x, np.float64) @ model.coef + model.intercept
    x = jnp.asarray(x, model.coef.dtype)
    if x.ndim != 2 or x.shape[1] != model.coef.shape[0]:
        raise ValueError(f"x must be (n, {model.coef.shape[0]}), got {x.shape}")
    return x @ model.coef + model.intercept


def residualize(model: RidgeFit, x, y):
    """y - predict(model, x): what of y (n, k) the linear map of x does not explain."""
    y_hat = predict(model, x)
    y = y[:, None] if np.ndim(y) == 1 else y
    if np.shape(y) != np.shape(y_hat):
        raise ValueError(f"y has shape {np.shape(y)}, predictions {np.shape(y_hat)}")
    return (np.asarray(y, np.float64) if isinstance(y_hat, np.ndarray) else jnp.asarray(y, y_hat.dtype)) - y_hat


# -------------------------------------------------------------------- many alphas, CV


@jax.jit
def _eig(cxx, cxy):
    lam, v = jnp.linalg.eigh(cxx)
    return lam, v, v.T @ cxy                                               # (d,), (d, d), (d, k)


def path(x, y, alphas: Sequence[float], *, precision: str = "float32") -> RidgeFit:
    """Coefficients for every alpha from one eigendecomposition of XcᵀXc: coef (A, d, k)."""
    y = y[:, None] if np.ndim(y) == 1 else y
    _check_xy(x, y)
    with _x64(precision):
        dtype = _dtype(precision)
        m = moments(jnp.asarray(x, dtype), jnp.asarray(y, dtype), precision=precision)
        mean_x, mean_y, cxx, cxy = centred(m)
        lam, v, q = _eig(cxx, cxy)
        a = jnp.asarray(alphas, dtype)
        coef = jnp.einsum("de,ae,ek->adk", v, 1.0 / (lam[None, :] + a[:, None]), q)   # (A, d, k)
        return _out(RidgeFit(coef, mean_y[None] - jnp.einsum("d,adk->ak", mean_x, coef), a), precision)


@functools.partial(jax.jit, static_argnames=("per_target",))
def _loo_primal(xc, yc, alphas, per_target):
    """-mean squared LOO error per alpha from the eigendecomposition of XcᵀXc (n > d).

    h_i = 1/n + Σ_j P_ij² / (λ_j + α) with P = Xc V (the intercept is unpenalised);
    LOO error = (yc_i - ŷc_i) / (1 - h_i)."""
    n = xc.shape[0]
    lam, v, q = _eig(xc.T @ xc, xc.T @ yc)
    p = xc @ v                                                              # (n, d)
    inv = 1.0 / (lam[:, None] + alphas[None, :])                           # (d, A)
    lev = 1.0 / n + (p * p) @ inv                                          # (n, A)

    def score(args):
        inv_a, lev_a = args
        err = (yc - p @ (inv_a[:, None] * q)) / (1.0 - lev_a)[:, None]    # (n, k)
        sq = err * err
        return sq.mean(0) if per_target else sq.mean()

    return -jax.lax.map(score, (inv.T, lev.T))                             # (A,) or (A, k)


@functools.partial(jax.jit, static_argnames=("per_target",))
def _loo_dual(xc, yc, alphas, per_target):
    """-mean squared LOO error per alpha from the eigendecomposition of XcXcᵀ (n <= d):
    c = G⁻¹yc, LOO error = c / diag(G⁻¹) with the intercept correction of sklearn."""
    n = xc.shape[0]
    lam, u = jnp.linalg.eigh(xc @ xc.T)
    uy, u1 = u.T @ yc, u.sum(0)                                            # (n, k), (n,)

    def score(a):
        inv = 1.0 / (lam + a)                                              # (n,)
        c = u @ (inv[:, None] * uy)
        diag = (u * u) @ inv - (u @ (inv * u1)) / n
        err = c / diag[:, None]
        sq = err * err
        return sq.mean(0) if per_target else sq.mean()

    return -jax.lax.map(score, alphas)


def _kfold_edges(n: int, folds: int) -> list[tuple[int, int]]:
    """sklearn KFold(folds) without shuffling: contiguous, the first n % folds one row longer."""
    sizes = [n // folds + (1 if f < n % folds else 0) for f in range(folds)]
    ends = np.cumsum(sizes)
    return [(int(e - s), int(e)) for s, e in zip(sizes, ends)]


@functools.partial(jax.jit, static_argnames=("edges",))
def _kfold_r2(x, y, alphas, edges):
    """Mean over folds of R² (uniform average over targets) per alpha; x, y centred overall."""
    m_all = _moments_jit(x, y, jnp.zeros(x.shape[1], x.dtype), jnp.zeros(y.shape[1], y.dtype),
                         jnp.ones(x.shape[0], x.dtype), block_edges(x.shape[1]), None)
    scores = []
    for s, e in edges:
        xt, yt = x[s:e], y[s:e]                                            # held-out fold
        m_te = _moments_jit(xt, yt, m_all.shift_x, m_all.shift_y, jnp.ones(e - s, x.dtype),
                            block_edges(x.shape[1]), None)
        m_tr = Moments(m_all.n - m_te.n, m_all.shift_x, m_all.shift_y,
                       *(u - v for u, v in zip(m_all[3:], m_te[3:])))
        mean_x, mean_y, cxx, cxy = centred(m_tr)
        lam, v, q = _eig(cxx, cxy)
        p = (xt - mean_x) @ v                                              # (n_f, d)
        ss_tot = ((yt - yt.mean(0)) ** 2).sum(0)                           # (k,)

        def r2(a):
            res = yt - mean_y - p @ (q / (lam + a)[:, None])               # (n_f, k)
            ss_res = (res * res).sum(0)
            safe = jnp.where(ss_tot > 0, ss_tot, 1.0)
            r = jnp.where(ss_tot > 0, 1.0 - ss_res / safe, jnp.where(ss_res > 0, 0.0, 1.0))
            return r.mean()                                                # sklearn's force_finite

        scores.append(jax.lax.map(r2, alphas))
    return jnp.stack(scores).mean(0)                                       # (A,)


def ridge_cv(x, y, alphas: Sequence[float] = (0.1, 1.0, 10.0), *, cv: int | None = None,
             alpha_per_target: bool = False, precision: str = "float32") -> RidgeCVResult:
    """sklearn ``RidgeCV(alphas, cv=cv)``: the best alpha, then a refit on all rows.

    cv=None: efficient leave-one-out, score = -mean squared LOO error (over rows and
    targets, or per target with alpha_per_target). cv=K: K unshuffled folds, score = mean
    R² over folds. Ties go to the first alpha listed, as in sklearn."""
    y = y[:, None] if np.ndim(y) == 1 else y
    n, d, k = _check_xy(x, y)
    alphas_np = np.asarray(alphas, np.float64).reshape(-1)
    if alphas_np.size == 0 or (alphas_np <= 0).any():
        raise ValueError(f"alphas must be positive, got {alphas}")
    if cv is not None and alpha_per_target:
        raise ValueError("alpha_per_target needs cv=None (as in sklearn)")
    if cv is not None and not 2 <= int(cv) <= n:
        raise ValueError(f"cv must be between 2 and n={n}, got {cv}")
    with _x64(precision):
        dtype = _dtype(precision)
        x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
        _finite(x, "x")
        _finite(y, "y")
        a = jnp.asarray(alphas_np, dtype)
        xc, yc = x - x.mean(0), y - y.mean(0)
        if cv is None:
            loo = _loo_primal if n > d else _loo_dual
            scores = loo(xc, yc, a, alpha_per_target)
        else:
            scores = _kfold_r2(xc, yc, a, tuple(_kfold_edges(n, int(cv))))
        best = jnp.argmax(scores, axis=0)                                  # first maximum
        alpha = a[best]
        model = fit(x, y, alpha, precision=precision)
        return _out(RidgeCVResult(model, alpha, a, scores), precision)
