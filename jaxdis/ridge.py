"""Closed-form multi-output ridge regression on device, with scikit-learn's semantics.

    m = ridge.fit(X, Y, alpha=1.0)          # sklearn Ridge(alpha).fit(X, Y); m.coef (d, k), m.intercept (k,)
    E = m.residualize(X2, Y2)               # Y2 - m.predict(X2): in-sample or out-of-sample
    m = ridge.fit_cv(X, Y, alphas)          # sklearn RidgeCV(alphas): efficient leave-one-out
    m = ridge.fit_cv(X, Y, alphas, cv=5)    # RidgeCV(alphas, cv=5): unshuffled K-fold, mean R²

Semantics: x and y are centred and the intercept is not penalised; coef minimises
||Yc - Xc W||² + alpha ||W||². Primal (n >= d): Cholesky of XcᵀXc + alpha I; dual (n < d):
Cholesky of the n × n kernel XcXcᵀ + alpha I. Many alphas come from one eigendecomposition
(``path``, ``fit_cv``). Leave-one-out scores are sklearn's: -mean squared LOO error over rows
and targets (``cv_scores`` holds the positive mean squared error); ties go to the first alpha.

Large n: ``moments`` accumulates n, means, XcᵀXc, XcᵀYc and per-column YcᵀYc in row blocks
(a ``fori_loop`` on device, or ``stream_moments`` over host blocks, merged exactly by the
parallel-variance update) and, with ``mesh=``, as a ``shard_map`` over data shards whose
partial sums are ``psum``-ed. Only the upper block triangle of the symmetric Gram is
multiplied (``col_blocks`` column blocks: the diagonal blocks and those above them), which
saves up to half of the Gram FLOPs — two thirds of the work at 1536 → 768. On the CPU backend
the default (``gram="auto"``) sums the same moments with the host BLAS instead (``syrk`` for
XᵀX, row blocks, no centred copy of X): XLA's CPU GEMM ran at ~0.8× OpenBLAS per core here.
LAPACK steps (Cholesky, eigh) run with one BLAS thread on CPU (``_one_blas_thread``).

Precision: float32 by default, every product at full precision (``jax.default_matmul_precision
("highest")``: no TF32 on a GPU, no bf16 passes on a TPU). ``dtype="float64"`` runs everything inside
``jax.enable_x64(True)``, a context manager, so the flag never leaks to the caller; float64
results come back as NumPy arrays (JAX would narrow them outside the context), float32
results as JAX arrays on the default device.
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

COL_BLOCK = 512          # target width of the Gram's column blocks (upper triangle only)
BLOCK_ROWS = 4096        # default row block of the Gram when n > 2 * BLOCK_ROWS
SHIFT_ROWS = 1024        # rows whose mean shifts the data before the float32 sums
HOST_BLOCK_ROWS = 32768  # most rows in one block of the host-BLAS Gram (gram="host")
RAW_SPREAD = 4.0         # host Gram: largest column mean² / variance summed without a shift
LOO_CHUNK_ELEMENTS = 1 << 23  # elements of one batched per-alpha operand in the LOO error (32 MB float32)


class Moments(NamedTuple):
    """Centred sufficient statistics of rows (x, y) (a pytree; merge with ``merge``)."""

    n: jax.Array          # ()       rows
    mean_x: jax.Array     # (d,)
    xx: jax.Array         # (d, d)   Σ (x - mean_x)(x - mean_x)ᵀ
    mean_y: jax.Array     # (k,)
    xy: jax.Array         # (d, k)   Σ (x - mean_x)(y - mean_y)ᵀ
    yy: jax.Array         # (k,)     Σ (y - mean_y)² per column


class RidgeModel(NamedTuple):
    """y ≈ x @ coef + intercept. coef is (d, k): the transpose of sklearn's ``coef_``."""

    coef: jax.Array                  # (d, k)
    intercept: jax.Array             # (k,)
    alpha: float | np.ndarray        # the alpha used; per target (k,) when given so
    alphas: np.ndarray | None = None     # (A,) searched by fit_cv
    cv_scores: np.ndarray | None = None  # (A,) or (A, k): LOO mean squared error, or K-fold mean R²
    vector_y: bool = False           # fitted on a 1-D y: predict returns (n,)

    def predict(self, x):
        """(n, k) predictions, or (n,) for a model fitted on a 1-D y."""
        out = predict(self, x)
        return out[:, 0] if self.vector_y else out

    def residualize(self, x, y):
        """y - predict(x): what of y the linear map of x does not explain."""
        return residualize(self, x, y)


# ------------------------------------------------------------------------------ checks


@contextlib.contextmanager
def _numerics(dtype: str):
    """The context every entry point computes in: products at full precision (a GPU would
    otherwise run float32 dots in TF32, ~1e-3 relative error in the Gram), and x64 switched on
    (in this context only) for float64."""
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    with jax.default_matmul_precision("highest"), (jax.enable_x64(True) if dtype == "float64"
                                                   else contextlib.nullcontext()):
        yield


def _jdtype(dtype: str):
    return jnp.float64 if dtype == "float64" else jnp.float32


def _out(tree, dtype: str):
    """float64 results leave the x64 context as NumPy arrays."""
    return jax.tree.map(np.asarray, tree) if dtype == "float64" else tree


def _as_2d(y):
    return y[:, None] if np.ndim(y) == 1 else y


def _check_xy(x, y) -> tuple[int, int, int]:
    """(n, d, k) with clear errors for ranks and row counts."""
    if np.ndim(x) != 2:
        raise ValueError(f"X must be 2-D (n, d), got shape {np.shape(x)}")
    if np.ndim(y) not in (1, 2):
        raise ValueError(f"Y must be 1-D or 2-D (n, k), got shape {np.shape(y)}")
    n = np.shape(x)[0]
    if n != np.shape(y)[0]:
        raise ValueError(f"X has {n} rows but Y has {np.shape(y)[0]}")
    if n < 2:
        raise ValueError(f"ridge needs at least 2 rows, got {n}")
    return n, np.shape(x)[1], (1 if np.ndim(y) == 1 else np.shape(y)[1])


def _check_finite(a, name: str) -> None:
    bad = ~jnp.isfinite(a)
    if bool(bad.any()):
        row = int(jnp.argmax(bad.reshape(bad.shape[0], -1).any(1)))
        raise ValueError(f"{name} has NaN or inf values (first at row {row})")


def aligned_empty(shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous NumPy array on a 64-byte boundary: what ``jax.device_put``
    on CPU aliases instead of copying (see ``to_device``); NumPy results written into one
    (``out=``) reach jax for free."""
    npdt = np.dtype(dtype)
    size = int(np.prod(shape)) * npdt.itemsize
    buf = np.empty(size + 64, np.uint8)
    start = -buf.ctypes.data % 64
    return buf[start:start + size].view(npdt).reshape(shape)


def to_device(a, dtype=jnp.float32) -> jax.Array:
    """A host array on the default device in `dtype`, without JAX's slow host copy.

    On CPU, ``jax.device_put`` aliases a C-contiguous, 64-byte-aligned NumPy array of the right
    dtype (zero copy) but copies anything else far below memcpy speed (20 000 × 1536 float32 on
    the 2-core dev machine: 0.24 s, ``jnp.asarray`` 0.45 s, a NumPy copy 0.05 s). So any other
    array is first copied once by NumPy into an aligned buffer. The alias is only ever read."""
    if isinstance(a, jax.Array):
        return a if a.dtype == dtype else a.astype(dtype)
    a = np.asarray(a)
    npdt = np.dtype(dtype)
    if jax.default_backend() == "cpu" and not (a.dtype == npdt and a.flags.c_contiguous and a.ctypes.data % 64 == 0):
        out = aligned_empty(a.shape, npdt)
        np.copyto(out, a, casting="unsafe")
        a = out
    return jax.device_put(np.asarray(a, npdt))


def _check_moments_finite(m, x, y) -> None:
    """Non-finite inputs make the moments non-finite: one small check instead of a pass over X
    and Y up front; only then are the inputs scanned for the first bad row."""
    if bool(jnp.isfinite(m.xx).all() & jnp.isfinite(m.xy).all() & jnp.isfinite(m.yy).all()
            & jnp.isfinite(m.mean_x).all() & jnp.isfinite(m.mean_y).all()):
        return
    _check_finite(x, "X")
    _check_finite(y, "Y")
    raise ValueError("ridge moments overflowed (finite inputs too large for float32?); try dtype='float64'")


@functools.cache
def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries, built once: a fresh
    ``threadpool_limits`` rescans the process's libraries, ~5 ms a call (14% of a dual fit)."""
    import scipy.linalg  # noqa: F401 - jax's CPU LAPACK calls run in SciPy's OpenBLAS: load it first
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController()


def _one_blas_thread():
    """Context for the LAPACK steps (Cholesky, eigh) on CPU: one BLAS thread.

    jax's CPU LAPACK calls run in the host BLAS library (OpenBLAS here), whose threaded
    Cholesky syncs at every panel and collapses when cores are oversubscribed: the d = 1536 solve
    took 0.3-2.5 s with 2 threads on the shared 2-core machine and a steady 0.16-0.18 s with one.
    Results must be waited for inside the context (JAX dispatches asynchronously)."""
    if jax.default_backend() != "cpu":
        return contextlib.nullcontext()
    try:
        return _blas_controller().limit(limits=1, user_api="blas")
    except ImportError:  # pragma: no cover - a scikit-learn dependency
        return contextlib.nullcontext()


def _alpha(alpha, k: int, dtype) -> jax.Array:
    a = jnp.asarray(alpha, dtype)
    if a.ndim > 1 or (a.ndim == 1 and a.shape[0] not in (1, k)):
        raise ValueError(f"alpha must be a number or one per target ({k}), got shape {a.shape}")
    if bool((a < 0).any()) or not bool(jnp.isfinite(a).all()):
        raise ValueError(f"alpha must be finite and >= 0, got {alpha}")
    return a.reshape(()) if a.size == 1 else a


# ------------------------------------------------------------------------- Gram, moments


def block_edges(d: int, col_blocks: int | None = None) -> tuple[int, ...]:
    """Column-block boundaries of a d-wide Gram: `col_blocks` blocks (default ~COL_BLOCK wide),
    widths a multiple of 128 where d allows (aligned GEMM tiles)."""
    nb = col_blocks or max(1, round(d / COL_BLOCK))
    nb = max(1, min(nb, d))
    width = math.ceil(d / nb)
    if col_blocks is None and d >= 128 * nb:
        width = 128 * math.ceil(width / 128)
    return tuple(range(0, d, width)) + (d,)


def gram_upper(z: jax.Array, w: jax.Array, edges: Sequence[int]) -> tuple[jax.Array, ...]:
    """Row blocks of [zᵀz | zᵀw], upper block triangle only: block i is (b_i, d - e_i + k).

    z (R, d), w (R, k). The lower blocks of zᵀz are transposes of upper ones (see assemble)."""
    zw = jnp.concatenate([z, w], axis=1)                                       # (R, d + k)
    return tuple(jax.lax.dot_general(zw[:, a:b], zw[:, a:], (((0,), (0,)), ((), ())))   # (b-a, d+k-a)
                 for a, b in zip(edges[:-1], edges[1:]))


def assemble(rows: Sequence[jax.Array], edges: Sequence[int]) -> tuple[jax.Array, jax.Array]:
    """(zᵀz (d, d), zᵀw (d, k)) from the upper block rows of `gram_upper`."""
    d, nb = edges[-1], len(edges) - 1
    up = {(i, j): rows[i][:, edges[j] - edges[i]:edges[j + 1] - edges[i]] for i in range(nb) for j in range(i, nb)}
    xx = jnp.concatenate([jnp.concatenate([up[i, j] if j >= i else up[j, i].T for j in range(nb)], axis=1)
                          for i in range(nb)], axis=0)
    xy = jnp.concatenate([r[:, d - a:] for r, a in zip(rows, edges[:-1])], axis=0)
    return xx, xy


def _raw_sums(x, y, shift_x, shift_y, mask, edges, block_rows):
    """Σz, Σw, Σw², zᵀz, zᵀw of z = (x - shift_x)·mask, w = (y - shift_y)·mask (mask None: all
    rows), in row blocks: a ``fori_loop`` over the full blocks (static shapes, one compiled body)
    and the remainder as one static tail block, so nothing is padded or copied."""
    n = x.shape[0]
    dt = shift_x.dtype

    def block(xb, yb, mb):
        z = xb.astype(dt) - shift_x                                            # (R, d)
        w = yb.astype(dt) - shift_y                                            # (R, k)
        if mb is not None:
            z, w = z * mb[:, None], w * mb[:, None]
        return z.sum(0), w.sum(0), (w * w).sum(0), gram_upper(z, w, edges)

    if block_rows is None or block_rows >= n:
        sz, sw, ww, rows = block(x, y, mask)
    else:
        full = n // block_rows

        def take(a, i):
            return None if a is None else jax.lax.dynamic_slice_in_dim(a, i * block_rows, block_rows)

        def body(i, acc):
            return jax.tree.map(jnp.add, acc, block(take(x, i), take(y, i), take(mask, i)))

        acc = block(take(x, 0), take(y, 0), take(mask, 0))     # the carry (varying under shard_map)
        acc = jax.lax.fori_loop(1, full, body, acc)
        if n % block_rows:
            tail = slice(full * block_rows, n)
            acc = jax.tree.map(jnp.add, acc, block(x[tail], y[tail], None if mask is None else mask[tail]))
        sz, sw, ww, rows = acc
    zz, zw = assemble(rows, edges)
    return sz, sw, ww, zz, zw


def _centre(n, shift_x, shift_y, sz, sw, ww, zz, zw) -> Moments:
    """Centred moments from sums of shifted rows (exact; the shift only guards float32)."""
    mz, mw = sz / n, sw / n
    return Moments(n, shift_x + mz, zz - n * jnp.outer(mz, mz), shift_y + mw,
                   zw - n * jnp.outer(mz, mw), ww - n * mw * mw)


@functools.partial(jax.jit, static_argnames=("edges", "block_rows", "centre"))
def _moments_jit(x, y, edges, block_rows, centre=True):
    dt = x.dtype
    # The shift only guards float32 against cancellation (the centring in _centre is exact for
    # any shift): the mean of the first rows does that as well as the global mean, without a pass.
    shift_x = x[:SHIFT_ROWS].mean(0) if centre else jnp.zeros(x.shape[1], dt)
    shift_y = y[:SHIFT_ROWS].mean(0) if centre else jnp.zeros(y.shape[1], dt)
    sums = _raw_sums(x, y, shift_x, shift_y, None, edges, block_rows)
    if not centre:  # raw moments: "means" are zero and nothing is subtracted
        sz, sw, ww, zz, zw = sums
        return Moments(jnp.asarray(x.shape[0], dt), shift_x, zz, shift_y, zw, ww)
    return _centre(jnp.asarray(x.shape[0], dt), shift_x, shift_y, *sums)


def merge(a: Moments, b: Moments) -> Moments:
    """Moments of the union of two row sets (exact parallel-variance update)."""
    n = a.n + b.n
    f = a.n * b.n / n
    dx, dy = b.mean_x - a.mean_x, b.mean_y - a.mean_y
    return Moments(n, a.mean_x + dx * (b.n / n), a.xx + b.xx + f * jnp.outer(dx, dx),
                   a.mean_y + dy * (b.n / n), a.xy + b.xy + f * jnp.outer(dx, dy), a.yy + b.yy + f * dy * dy)


def _mesh_moments(x, y, mesh, axis: str, edges, block_rows, dt) -> Moments:
    """Each device sums its row shard (about the global means), then psum; rows padded with
    masked zeros to a multiple of the axis size."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    size = mesh.shape[axis]
    pad = -x.shape[0] % size
    put = lambda a: jax.device_put(jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)),  # noqa: E731
                                   NamedSharding(mesh, P(axis)))
    x, y, mask = put(jnp.asarray(x, dt)), put(jnp.asarray(y, dt)), put(jnp.ones(x.shape[0], dt))

    @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P(axis), P(axis), P(axis)), out_specs=P())
    def per_shard(xs, ys, ms):
        n = jax.lax.psum(ms.sum(), axis)
        mean_x = jax.lax.psum((xs * ms[:, None]).sum(0), axis) / n
        mean_y = jax.lax.psum((ys * ms[:, None]).sum(0), axis) / n
        local = _raw_sums(xs, ys, mean_x, mean_y, ms, edges, block_rows)
        return _centre(n, mean_x, mean_y, *(jax.lax.psum(a, axis) for a in local))

    return jax.jit(per_shard)(x, y, mask)


def _host_gram(gram: str, mesh) -> bool:
    if gram not in ("auto", "host", "xla"):
        raise ValueError(f"gram must be 'auto', 'host' or 'xla', got {gram!r}")
    if gram == "host" and mesh is not None:
        raise ValueError("gram='host' sums on this host; a mesh needs gram='xla' (or 'auto')")
    return gram == "host" or (gram == "auto" and mesh is None and jax.default_backend() == "cpu")


def _spread(s1, s2, n) -> float:
    """max over columns of mean² / variance from Σa, Σa² and n (float64): summing raw float32
    products and centring afterwards multiplies the relative error by 1 + this (cancellation).
    A column with no spread but a non-zero mean gives inf."""
    mean = np.asarray(s1, np.float64) / n
    m2 = mean * mean
    var = np.asarray(s2, np.float64) / n - m2
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(var > 1e-6 * m2, m2 / var, np.where(m2 > 0, np.inf, 0.0))
    return float(r.max(initial=0.0))


def _head_spread(a) -> float:
    head = np.asarray(a[:SHIFT_ROWS], np.float64)
    return _spread(head.sum(0), (head * head).sum(0), head.shape[0])


def _host_sums(x, y, shift_x, shift_y, rows: int, npdt):
    """Σz, Σw, Σw², zᵀz, zᵀw of z = x - shift_x, w = y - shift_y with the host BLAS, `rows`
    rows at a time. Shifts None: the blocks themselves (views, no copy, when already `npdt`);
    otherwise each block is shifted into a reused buffer. zᵀz is a ``syrk``; the column sums
    are BLAS ``gemv`` products with a ones vector; block sums are merged in float64."""
    (n, d), k = x.shape, y.shape[1]
    zbuf = wbuf = None
    if shift_x is not None or x.dtype != npdt:
        zbuf = np.empty((rows, d), npdt)
    if shift_y is not None or y.dtype != npdt:
        wbuf = np.empty((rows, k), npdt)

    def block(a, buf, shift):
        if buf is None:
            return a
        out = buf[:a.shape[0]]
        if shift is None:
            np.copyto(out, a, casting="unsafe")
        else:
            np.subtract(a, shift, out=out, casting="unsafe")
        return out

    ones = np.ones(rows, npdt)
    zz, zw = np.zeros((d, d), npdt), np.zeros((d, k), npdt)
    sz, sw, ww = np.zeros(d), np.zeros(k), np.zeros(k)
    for s in range(0, n, rows):
        e = min(n, s + rows)
        z, w = block(x[s:e], zbuf, shift_x), block(y[s:e], wbuf, shift_y)
        zz += z.T @ z                                                          # syrk
        zw += z.T @ w
        sz += ones[:e - s] @ z
        sw += ones[:e - s] @ w
        ww += np.einsum("ij,ij->j", w, w)
    return sz, sw, ww, zz, zw


def _host_moments(x, y, block_rows: int | None, centre: bool, dtype: str) -> Moments:
    """The same centred moments, summed by the host's BLAS in row blocks (the CPU default).

    On CPU, XLA's GEMM ran at ~0.8× OpenBLAS's speed per core on this project's machine, and
    XLA has no symmetric rank-k update; NumPy's ``zᵀz`` is a BLAS ``syrk`` (half the Gram's
    FLOPs, as in sklearn). Data whose columns sit near zero (mean² ≤ RAW_SPREAD × variance on
    the first rows) are summed as they are, with no pass over them besides the products, and
    centred afterwards as in ``_centre``: the float32 error grows by at most 1 + RAW_SPREAD. Data
    far from zero are shifted by their first rows' mean block by block, in a reused buffer (no
    centred copy of X). If the whole data turn out far from zero after all, they are summed
    again, shifted by their means. At 100 000 × 1536 → 768, the raw sums took 0.3 s (9 %) less."""
    npdt = np.dtype(dtype)
    x, y = np.asarray(x), np.asarray(y)        # a CPU jax.Array is viewed, not copied
    n, d = x.shape
    k = y.shape[1]
    rows = min(n, block_rows or HOST_BLOCK_ROWS)
    rows = -(-n // -(-n // rows))                    # equal blocks: no short, slow tail block
    shift_x = shift_y = None
    if not centre or max(_head_spread(x), _head_spread(y)) <= RAW_SPREAD:
        sums = _host_sums(x, y, None, None, rows, npdt)
        sz, sw, ww, zz, _ = sums
        if centre and max(_spread(sz, np.diagonal(zz), n), _spread(sw, ww, n)) > 4 * RAW_SPREAD:
            # the first rows hid an offset: sum again about the true means
            shift_x, shift_y = (sz / n).astype(npdt), (sw / n).astype(npdt)
            sums = _host_sums(x, y, shift_x, shift_y, rows, npdt)
    else:
        shift_x = x[:SHIFT_ROWS].mean(0, dtype=np.float64).astype(npdt)
        shift_y = y[:SHIFT_ROWS].mean(0, dtype=np.float64).astype(npdt)
        sums = _host_sums(x, y, shift_x, shift_y, rows, npdt)
    dt = _jdtype(dtype)
    sums = [to_device(a, dt) for a in sums]
    shift_x = to_device(np.zeros(d, npdt) if shift_x is None else shift_x, dt)
    shift_y = to_device(np.zeros(k, npdt) if shift_y is None else shift_y, dt)
    if not centre:
        return Moments(jnp.asarray(n, dt), shift_x, sums[3], shift_y, sums[4], sums[2])
    return _centre(jnp.asarray(n, dt), shift_x, shift_y, *sums)


def moments(x, y, *, block_rows: int | None = None, col_blocks: int | None = None, mesh=None,
            axis: str = "data", dtype: str = "float32", centre: bool = True, gram: str = "auto") -> Moments:
    """Centred moments of (x (n, d), y (n, k)) on device, `block_rows` rows at a time.

    With `mesh`, rows are sharded over `axis` and the per-device sums psum-ed (block_rows
    then applies within each shard). gram: "xla" sums on the device (upper block triangle,
    ``col_blocks``); "host" with the host's BLAS (``_host_moments``); "auto" = "host" on the
    CPU backend without a mesh, else "xla"."""
    y = _as_2d(y)
    n, d, k = _check_xy(x, y)
    edges = block_edges(d, col_blocks)
    host = _host_gram(gram, mesh)
    with _numerics(dtype):
        dt = _jdtype(dtype)
        if host:
            return _out(_host_moments(x, y, block_rows, centre, dtype), dtype)
        if mesh is not None:
            if not centre:
                raise ValueError("moments on a mesh are centred (fit_intercept=True)")
            return _out(_mesh_moments(x, y, mesh, axis, edges, block_rows, dt), dtype)
        if block_rows is None and n > 2 * BLOCK_ROWS:
            block_rows = BLOCK_ROWS
        return _out(_moments_jit(to_device(x, dt), to_device(y, dt), edges, block_rows, centre), dtype)


def stream_moments(blocks: Iterable[tuple[np.ndarray, np.ndarray]], *, col_blocks: int | None = None,
                   dtype: str = "float32") -> Moments:
    """Moments of row blocks (x_b, y_b) coming from the host (e.g. a memory-mapped file), so the
    data never has to fit on the device at once. Blocks are merged exactly (``merge``)."""
    total = None
    with _numerics(dtype):
        dt = _jdtype(dtype)
        for xb, yb in blocks:
            yb = _as_2d(yb)
            _check_xy(xb, yb)
            part = _moments_jit(to_device(xb, dt), to_device(yb, dt), block_edges(np.shape(xb)[1], col_blocks),
                                None)
            total = part if total is None else merge(total, part)
        if total is None:
            raise ValueError("stream_moments: no blocks")
        return _out(total, dtype)


# ---------------------------------------------------------------------------------- fit


@jax.jit
def _solve_primal(cxx, cxy, alpha):
    """(G + alpha I)⁻¹ B by Cholesky; a per-target alpha (k,) by one eigh. Primal: G = XcᵀXc,
    B = XcᵀYc; the host dual passes the kernel G = XcXcᵀ and B = Yc."""
    if alpha.ndim == 0:
        return cho_solve(cho_factor(cxx + alpha * jnp.eye(cxx.shape[0], dtype=cxx.dtype)), cxy)
    lam, v = jnp.linalg.eigh(cxx)
    return v @ ((v.T @ cxy) / (lam[:, None] + alpha[None, :]))


@functools.partial(jax.jit, static_argnames=("intercept",))
def _solve_dual(x, y, alpha, intercept):
    """Xcᵀ (XcXcᵀ + alpha I)⁻¹ Yc: Cholesky of the n × n kernel; per-target alpha by one eigh.
    One compiled call from the raw rows to (coef, mean_x, mean_y, all finite)."""
    mean_x = x.mean(0) if intercept else jnp.zeros(x.shape[1], x.dtype)
    mean_y = y.mean(0) if intercept else jnp.zeros(y.shape[1], y.dtype)
    xc, yc = x - mean_x, y - mean_y
    kern = xc @ xc.T                                                           # (n, n)
    if alpha.ndim == 0:
        dual = cho_solve(cho_factor(kern + alpha * jnp.eye(kern.shape[0], dtype=xc.dtype)), yc)
    else:
        lam, u = jnp.linalg.eigh(kern)
        dual = u @ ((u.T @ yc) / (lam[:, None] + alpha[None, :]))
    coef = xc.T @ dual                                                         # (d, k)
    return coef, mean_x, mean_y, jnp.isfinite(coef).all()


def _host_dual(x, y, alpha: jax.Array, intercept: bool, dtype: str):
    """The dual solution with the host's BLAS (the CPU default): coef, mean_x, mean_y (NumPy).

    One centred copy of X; K = XcXcᵀ is a BLAS ``syrk`` and coef = Xcᵀ·A a GEMM, both NumPy
    (OpenBLAS, threaded); only the n × n solve runs in jax (``_solve_primal``, one compiled call,
    one BLAS thread). At 468 × 1536 → 768 on the 2-core dev machine the XLA ``_solve_dual`` took
    21-22 ms; its host parts: K 3-7 ms, Cholesky solve 4-7 ms, Xcᵀ·A 7 ms."""
    npdt = np.dtype(dtype)
    x, y = np.asarray(x, npdt), np.asarray(y, npdt)   # a CPU jax.Array is viewed, not copied
    mean_x = x.mean(0, dtype=np.float64).astype(npdt) if intercept else np.zeros(x.shape[1], npdt)
    mean_y = y.mean(0, dtype=np.float64).astype(npdt) if intercept else np.zeros(y.shape[1], npdt)
    (n, d), k = x.shape, y.shape[1]
    # Results go straight into aligned buffers, so each reaches jax without a copy.
    kern, yc, coef = aligned_empty((n, n), npdt), aligned_empty((n, k), npdt), aligned_empty((d, k), npdt)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite inputs: fit() says where
        xc = x - mean_x                                                        # (n, d)
        np.subtract(y, mean_y, out=yc)                                         # (n, k)
        np.matmul(xc, xc.T, out=kern)                                          # (n, n) syrk
        with _one_blas_thread():
            dual = np.asarray(_solve_primal(to_device(kern, npdt), to_device(yc, npdt), alpha))   # (n, k)
        np.matmul(xc.T, dual, out=coef)                                        # (d, k)
        return coef, mean_x, mean_y


def _model(coef, mean_x, mean_y, alpha, fit_intercept, vector_y, finite: bool | None = None, **extra) -> RidgeModel:
    """The fitted model; non-finite coefficients are an error. `finite`: the caller already
    knows whether coef is all finite (None: check it here)."""
    what = "ridge coefficients (alpha 0 with a singular Gram?)"
    if finite is None:
        _check_finite(coef, what)
    elif not finite:
        raise ValueError(f"{what} has NaN or inf values")
    intercept = mean_y - mean_x @ coef if fit_intercept else jnp.zeros_like(mean_y)
    return RidgeModel(coef, intercept, alpha, vector_y=vector_y, **extra)


def fit_moments(m: Moments, alpha=1.0, *, fit_intercept: bool = True, dtype: str | None = None,
                vector_y: bool = False) -> RidgeModel:
    """The primal solution from moments: any n, any number of row blocks or shards."""
    dtype = dtype or ("float64" if np.asarray(m.xx).dtype == np.float64 else "float32")
    with _numerics(dtype):
        m = jax.tree.map(lambda a: jnp.asarray(a, _jdtype(dtype)), m)
        a = _alpha(alpha, m.xy.shape[1], m.xx.dtype)
        with _one_blas_thread():
            coef = jax.block_until_ready(_solve_primal(m.xx, m.xy, a))
        return _out(_model(coef, m.mean_x, m.mean_y, alpha, fit_intercept, vector_y), dtype)


def fit(x, y, alpha=1.0, *, fit_intercept: bool = True, solver: str = "auto", block_rows: int | None = None,
        col_blocks: int | None = None, mesh=None, dtype: str = "float32", gram: str = "auto") -> RidgeModel:
    """sklearn ``Ridge(alpha, fit_intercept).fit(x, y)``: primal if n >= d (or solver="primal",
    or on a mesh), else dual. alpha: a number, or one per target. gram: see ``moments``; for the
    dual, "host" (the CPU default) forms XcXcᵀ and Xcᵀ·A with the host BLAS (``_host_dual``)."""
    n, d, k = _check_xy(x, y)
    vector_y = np.ndim(y) == 1
    y = _as_2d(y)
    if solver == "auto":
        solver = "primal" if n >= d or mesh is not None else "dual"
    if solver not in ("primal", "dual"):
        raise ValueError(f"solver must be 'auto', 'primal' or 'dual', got {solver!r}")
    with _numerics(dtype):
        dt = _jdtype(dtype)
        a = _alpha(alpha, k, dt)  # validate before the heavy work
        if _host_gram(gram, mesh) and not isinstance(x, jax.Array):
            x, y = np.asarray(x), np.asarray(y)           # summed where they are: no transfer
        else:
            x, y = to_device(x, dt), to_device(y, dt)
        if solver == "primal":
            m = moments(x, y, block_rows=block_rows, col_blocks=col_blocks, mesh=mesh, dtype=dtype,
                        centre=fit_intercept, gram=gram)
            _check_moments_finite(m, x, y)
            return fit_moments(m, alpha, fit_intercept=fit_intercept, dtype=dtype, vector_y=vector_y)
        if _host_gram(gram, mesh):
            coef, mean_x, mean_y = _host_dual(x, y, a, fit_intercept, dtype)
            ok = np.isfinite(coef).all()
            coef, mean_x, mean_y = (to_device(v, dt) for v in (coef, mean_x, mean_y))
        else:
            with _one_blas_thread():
                coef, mean_x, mean_y, ok = jax.block_until_ready(_solve_dual(x, y, a, fit_intercept))
        ok = bool(ok)
        if not ok:         # non-finite inputs make the coefficients non-finite: say where
            _check_finite(x, "X")
            _check_finite(y, "Y")
        return _out(_model(coef, mean_x, mean_y, alpha, fit_intercept, vector_y, finite=ok), dtype)



def predict(model: RidgeModel, x):
    """x (n, d) @ coef + intercept -> (n, k), in the model's precision."""
    d = np.shape(model.coef)[0]
    if np.ndim(x) != 2 or np.shape(x)[1] != d:
        raise ValueError(f"X must be (n, {d}) (the model was fitted on {d} columns), got shape {np.shape(x)}")
    if isinstance(model.coef, np.ndarray) and model.coef.dtype == np.float64:
        return np.asarray(x, np.float64) @ model.coef + model.intercept
    return jnp.matmul(jnp.asarray(x, model.coef.dtype), model.coef, precision="highest") + model.intercept


def residualize(model: RidgeModel, x, y):
    """y - predict(model, x), same shape as y."""
    y_hat = predict(model, x)
    y_hat = y_hat[:, 0] if np.ndim(y) == 1 else y_hat
    if np.shape(y) != np.shape(y_hat):
        raise ValueError(f"Y has shape {np.shape(y)} but the predictions have {np.shape(y_hat)}")
    if isinstance(y_hat, np.ndarray):
        return np.asarray(y, np.float64) - y_hat
    return jnp.asarray(y, y_hat.dtype) - y_hat


# -------------------------------------------------------------------- many alphas, CV


@jax.jit
def _eig(cxx, cxy):
    lam, v = jnp.linalg.eigh(cxx)
    return lam, v, v.T @ cxy                                                   # (d,), (d, d), (d, k)


def path(x, y, alphas: Sequence[float], *, fit_intercept: bool = True, dtype: str = "float32") -> RidgeModel:
    """Models for every alpha from one eigendecomposition of XcᵀXc: coef (A, d, k), intercept (A, k)."""
    y = _as_2d(y)
    _check_xy(x, y)
    with _numerics(dtype):
        dt = _jdtype(dtype)
        m = _moments_jit(jnp.asarray(x, dt), jnp.asarray(y, dt), block_edges(np.shape(x)[1]), None, fit_intercept)
        with _one_blas_thread():
            lam, v, q = jax.block_until_ready(_eig(m.xx, m.xy))
        a = jnp.asarray(alphas, dt)
        coef = jnp.einsum("de,ae,ek->adk", v, 1.0 / (lam[None, :] + a[:, None]), q)      # (A, d, k)
        intercept = m.mean_y[None] - jnp.einsum("d,adk->ak", m.mean_x, coef)
        return _out(RidgeModel(coef, intercept, np.asarray(alphas)), dtype)


@functools.partial(jax.jit, static_argnames=("per_target", "intercept"))
def _loo_primal(xc, yc, alphas, per_target, intercept):
    """Mean squared LOO error per alpha from the eigendecomposition of XcᵀXc (n > d).

    Leverage h_i = 1/n (the unpenalised intercept) + Σ_j P_ij² / (λ_j + α) with P = Xc V;
    LOO error = (yc_i - ŷ_i) / (1 - h_i). One (n, d) @ (d, k) product per alpha."""
    n = xc.shape[0]
    lam, v, q = _eig(xc.T @ xc, xc.T @ yc)
    p = xc @ v                                                                 # (n, d)
    inv = 1.0 / (lam[:, None] + alphas[None, :])                               # (d, A)
    lev = (p * p) @ inv + (1.0 / n if intercept else 0.0)                      # (n, A)

    def mse(args):
        inv_a, lev_a = args
        err = (yc - p @ (inv_a[:, None] * q)) / (1.0 - lev_a)[:, None]        # (n, k)
        return (err * err).mean(0) if per_target else (err * err).mean()

    return jax.lax.map(mse, (inv.T, lev.T)), (lam, v, q)                        # (A,) or (A, k)


@jax.jit
def _primal_coef(lam, v, q, alpha):
    """V (Λ + alpha)⁻¹ Vᵀ XcᵀYc from the Gram's eigendecomposition; alpha () or per target (k,)."""
    return v @ (q / (lam[:, None] + (alpha[None, :] if alpha.ndim else alpha)))


def _alpha_chunks(a: int, per_alpha: int) -> int:
    """Alphas per batched product: as many as keep one chunk's (rows, cols) operand under
    LOO_CHUNK_ELEMENTS, at least one."""
    return max(1, min(a, LOO_CHUNK_ELEMENTS // max(per_alpha, 1)))


def _map_chunks(fn, xs, chunk: int):
    """fn over leading-axis chunks of `xs` (pytree of (A, ...) arrays), concatenated; the ragged
    tail is its own call. Not ``jax.lax.map(..., batch_size=)``: that vmaps a per-alpha fn into a
    batched dot, 20–70 % slower here than fn's own (C·n, n) product (n = 468, 10 alphas, CPU)."""
    a = jax.tree.leaves(xs)[0].shape[0]
    full = a // chunk * chunk
    out = []
    if full:
        head = jax.tree.map(lambda v: v[:full].reshape(full // chunk, chunk, *v.shape[1:]), xs)
        res = jax.lax.map(fn, head)
        out.append(res.reshape(full, *res.shape[2:]))
    if full < a:
        out.append(fn(jax.tree.map(lambda v: v[full:], xs)))
    return jnp.concatenate(out) if len(out) > 1 else out[0]


@functools.partial(jax.jit, static_argnames=("per_target", "intercept"))
def _loo_dual(xc, yc, alphas, per_target, intercept):
    """Mean squared LOO error per alpha from the eigendecomposition of XcXcᵀ (n <= d):
    c = G⁻¹yc, LOO error = c / diag(G⁻¹), diag corrected for the intercept as in sklearn.

    Per alpha, Σ_k c_ik² is diag(U D M D Uᵀ) with M = (Uᵀyc)(Uᵀyc)ᵀ (n × n) when k > n: n³
    instead of n²k multiply-adds. Several alphas share one GEMM (stacked rows of U D, or
    stacked columns of D Uᵀyc): one large product instead of A small ones (at n = 468 on CPU,
    16 ms vs 19–22 ms in isolation; the whole fit_cv was unchanged within noise, 74.7 vs 74.9 ms
    median on a quiet machine). Also returns the decomposition, for the refit (``_dual_coef``)."""
    n, k = yc.shape
    lam, u = jnp.linalg.eigh(xc @ xc.T)
    uy, u1 = u.T @ yc, u.sum(0)                                                # (n, k), (n,)
    inv = 1.0 / (lam[None, :] + alphas[:, None])                               # (A, n)
    diag = inv @ (u * u).T                                                     # (A, n)
    if intercept:
        diag = diag - ((inv * u1) @ u.T) / n

    if per_target or k <= n:
        def mse(args):                                                         # a chunk of C alphas
            inv_c, diag_c = args                                               # (C, n)
            c = u @ (inv_c.T[:, :, None] * uy[:, None, :]).reshape(n, -1)      # (n, C·k)
            err = c.reshape(n, -1, k) / diag_c.T[:, :, None]                   # (n, C, k)
            return (err * err).mean(0) if per_target else (err * err).mean((0, 2))
        chunk = _alpha_chunks(alphas.shape[0], n * k)
    else:
        mm = uy @ uy.T                                                         # (n, n)

        def mse(args):
            inv_c, diag_c = args
            w = (u[None] * inv_c[:, None, :]).reshape(-1, n)                   # (C·n, n): U D per alpha
            sq = ((w @ mm) * w).sum(1).reshape(-1, n)                           # (C, n)
            return (sq / (diag_c * diag_c)).sum(1) / (n * k)
        chunk = _alpha_chunks(alphas.shape[0], n * n)

    return _map_chunks(mse, (inv, diag), chunk), (lam, u, uy)


@jax.jit
def _dual_coef(xc, lam, u, uy, alpha):
    """Xcᵀ U (Λ + alpha)⁻¹ Uᵀ yc from the kernel's eigendecomposition; alpha () or per target (k,)."""
    inv = 1.0 / (lam[:, None] + (alpha[None, :] if alpha.ndim else alpha))
    return xc.T @ (u @ (inv * uy))


def kfold_edges(n: int, folds: int) -> tuple[tuple[int, int], ...]:
    """sklearn ``KFold(folds)`` without shuffling: contiguous, the first n % folds one row longer."""
    sizes = [n // folds + (1 if f < n % folds else 0) for f in range(folds)]
    ends = np.cumsum(sizes)
    return tuple((int(e - s), int(e)) for s, e in zip(sizes, ends))


@functools.partial(jax.jit, static_argnames=("edges", "intercept"))
def _kfold_r2(x, y, alphas, edges, intercept):
    """Mean over folds of R² (uniform average over targets) per alpha. The training moments of
    each fold are the total minus the fold's (one Gram pass), then one eigh per fold."""
    cols = block_edges(x.shape[1])
    total = _raw_sums(x, y, jnp.zeros(x.shape[1], x.dtype), jnp.zeros(y.shape[1], y.dtype),
                      jnp.ones(x.shape[0], x.dtype), cols, None)
    scores = []
    for s, e in edges:
        xt, yt = x[s:e], y[s:e]                                                # held-out fold
        fold = _raw_sums(xt, yt, jnp.zeros(x.shape[1], x.dtype), jnp.zeros(y.shape[1], y.dtype),
                         jnp.ones(e - s, x.dtype), cols, None)
        n_tr = jnp.asarray(x.shape[0] - (e - s), x.dtype)
        sums = [u - v for u, v in zip(total, fold)]
        if intercept:
            m = _centre(n_tr, jnp.zeros(x.shape[1], x.dtype), jnp.zeros(y.shape[1], y.dtype), *sums)
        else:
            m = Moments(n_tr, jnp.zeros(x.shape[1], x.dtype), sums[3], jnp.zeros(y.shape[1], y.dtype), sums[4],
                        sums[2])
        lam, v, q = _eig(m.xx, m.xy)
        p = (xt - m.mean_x) @ v                                                # (n_f, d)
        ss_tot = ((yt - yt.mean(0)) ** 2).sum(0)                               # (k,)

        def r2(a):
            res = yt - m.mean_y - p @ (q / (lam + a)[:, None])                 # (n_f, k)
            ss_res = (res * res).sum(0)
            ok = ss_tot > 0
            r = jnp.where(ok, 1.0 - ss_res / jnp.where(ok, ss_tot, 1.0), jnp.where(ss_res > 0, 0.0, 1.0))
            return r.mean()                                                    # sklearn's force_finite

        scores.append(jax.lax.map(r2, alphas))
    return jnp.stack(scores).mean(0)                                           # (A,)


def fit_cv(x, y, alphas: Sequence[float] = (0.1, 1.0, 10.0), *, cv: int | None = None, fit_intercept: bool = True,
           alpha_per_target: bool = False, dtype: str = "float32") -> RidgeModel:
    """sklearn ``RidgeCV(alphas, cv=cv)``: choose alpha, then refit on every row.

    cv=None: efficient leave-one-out; ``cv_scores`` = mean squared LOO error per alpha (over
    rows and targets, or per target with alpha_per_target), the smallest wins. cv=K: K
    unshuffled folds; ``cv_scores`` = mean R² over folds, the largest wins. The data are
    centred once up front (the fold statistics subtract exactly), as sklearn's are per fold."""
    n, d, k = _check_xy(x, y)
    vector_y = np.ndim(y) == 1
    y = _as_2d(y)
    alphas = np.asarray(alphas, np.float64).reshape(-1)
    if alphas.size == 0 or not (alphas > 0).all():
        raise ValueError(f"alphas must be positive, got {alphas}")
    if cv is not None and alpha_per_target:
        raise ValueError("alpha_per_target needs cv=None (as in sklearn)")
    if cv is not None and not 2 <= int(cv) <= n:
        raise ValueError(f"cv must be between 2 and n={n}, got {cv}")
    with _numerics(dtype):
        dt = _jdtype(dtype)
        x, y = to_device(x, dt), to_device(y, dt)
        _check_finite(x, "X")
        _check_finite(y, "Y")
        a = jnp.asarray(alphas, dt)
        mean_x = x.mean(0) if fit_intercept else jnp.zeros(d, dt)
        mean_y = y.mean(0) if fit_intercept else jnp.zeros(k, dt)
        xc, yc = x - mean_x, y - mean_y
        if cv is not None:
            with _one_blas_thread():
                scores = np.asarray(_kfold_r2(xc, yc, a, kfold_edges(n, int(cv)), fit_intercept), np.float64)
            alpha = float(alphas[np.argmax(scores, axis=0)])
            model = fit(x, y, alpha, fit_intercept=fit_intercept, dtype=dtype)
            return _out(model._replace(alphas=alphas, cv_scores=scores, vector_y=vector_y), dtype)
        # leave-one-out: the refit reuses the decomposition the scores came from
        loo = _loo_primal if n > d else _loo_dual
        with _one_blas_thread():
            scores, eig = jax.block_until_ready(loo(xc, yc, a, alpha_per_target, fit_intercept))
        scores = np.asarray(scores, np.float64)
        best = np.argmin(scores, axis=0)                                       # first minimum
        alpha = alphas[best] if alpha_per_target else float(alphas[best])
        a_best = jnp.asarray(alpha, dt)
        coef = _primal_coef(*eig, a_best) if n > d else _dual_coef(xc, *eig, a_best)
        return _out(_model(coef, mean_x, mean_y, alpha, fit_intercept, vector_y, alphas=alphas, cv_scores=scores),
                    dtype)
