"""Cosine-similarity statistics by label, blockwise on device: never an N x N matrix in memory.

    stats = cosine_stats(X, speakers)          # same-group vs different-group pairs
    stats.summary()   # {"same_mean", "same_std", "same_q50", ..., "diff_mean", ..., "gap"}
    M = group_mean_matrix(X, speakers)          # (G, G) mean similarity between groups (the blog's heatmap)

Pairs are all unordered pairs a < b. Rows are L2-normalised, then visited in (block x block)
tiles of the upper triangle: each tile adds pair counts, sums, sums of squares and a histogram
over [-1, 1] (per pair kind, and per group for same-group pairs). Means and stds are exact;
quantiles are read from the histograms by linear interpolation inside a bin, so they are good
to one bin width (2 / bins; 1e-3 with the default 2000 bins). Memory is O(block² + N d).
The group x group mean matrix needs no pairs at all: with s_g the sum of group g's unit rows,
the sum of similarities between groups g and h is s_g · s_h.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _normalise(X):
    """Unit rows (zero rows stay zero)."""
    norm = jnp.linalg.norm(X, axis=1, keepdims=True)
    return X / jnp.where(norm > 0, norm, 1.0)


def group_codes(labels) -> tuple[np.ndarray, np.ndarray]:
    """(names (G,), codes (N,) int32) for any label array."""
    names, codes = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    return names, codes.astype(np.int32)


@functools.partial(jax.jit, static_argnames=("block", "bins", "n_groups"))
def _row_block(Xn, codes, i, block: int, bins: int, n_groups: int):
    """Statistics of the tiles (i, j), j >= i, of the upper triangle. Xn (Np, d) padded with zero
    rows whose code is -1; returns counts (2,), sums (2,), sumsq (2,), hist (2, bins), ghist (G, bins)."""
    n_blocks = Xn.shape[0] // block
    rows = jnp.arange(block)
    xa = jax.lax.dynamic_slice_in_dim(Xn, i * block, block)            # (B, d)
    ga = jax.lax.dynamic_slice_in_dim(codes, i * block, block)         # (B,)
    ia = i * block + rows

    def tile(j, acc):
        counts, sums, sumsq, hist, ghist = acc
        xb = jax.lax.dynamic_slice_in_dim(Xn, j * block, block)
        gb = jax.lax.dynamic_slice_in_dim(codes, j * block, block)
        ib = j * block + rows
        s = jnp.matmul(xa, xb.T, precision=jax.lax.Precision.HIGHEST)  # (B, B)
        valid = (ia[:, None] < ib[None, :]) & (ga[:, None] >= 0) & (gb[None, :] >= 0)
        same = valid & (ga[:, None] == gb[None, :])
        diff = valid & ~same
        w = jnp.stack([same, diff]).astype(s.dtype)                    # (2, B, B)
        counts = counts + w.sum((1, 2))
        sums = sums + (w * s).sum((1, 2))
        sumsq = sumsq + (w * s * s).sum((1, 2))
        idx = jnp.clip(((s + 1.0) * (bins / 2.0)).astype(jnp.int32), 0, bins - 1)   # (B, B)
        hist = hist.at[0, idx].add(w[0]).at[1, idx].add(w[1])
        gidx = jnp.where(same, ga[:, None], 0) * bins + idx
        ghist = ghist.reshape(-1).at[gidx].add(w[0]).reshape(n_groups, bins)
        return counts, sums, sumsq, hist, ghist

    z = jnp.zeros
    init = (z(2), z(2), z(2), z((2, bins)), z((n_groups, bins)))
    return jax.lax.fori_loop(i, n_blocks, tile, init)


@dataclass(frozen=True)
class CosineStats:
    """Pair statistics: index 0 = same group, 1 = different groups."""

    counts: np.ndarray       # (2,) pairs
    sums: np.ndarray         # (2,)
    sumsq: np.ndarray        # (2,)
    hist: np.ndarray         # (2, bins) over [-1, 1]
    group_hist: np.ndarray   # (G, bins) same-group pairs per group
    groups: np.ndarray       # (G,) names

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(-1.0, 1.0, self.hist.shape[1] + 1)

    def mean(self, k: int) -> float:
        return float(self.sums[k] / self.counts[k]) if self.counts[k] else float("nan")

    def std(self, k: int) -> float:
        if not self.counts[k]:
            return float("nan")
        m = self.sums[k] / self.counts[k]
        return float(np.sqrt(max(self.sumsq[k] / self.counts[k] - m * m, 0.0)))

    def quantile(self, k: int, q: float) -> float:
        """From the histogram: linear inside the bin holding the q-th pair (one bin width accurate)."""
        return hist_quantile(self.hist[k], self.edges, q)

    def summary(self) -> dict[str, float]:
        out = {}
        for k, name in enumerate(("same", "diff")):
            out[f"{name}_mean"] = self.mean(k)
            out[f"{name}_std"] = self.std(k)
            out[f"{name}_pairs"] = float(self.counts[k])
            for q in QUANTILES:
                out[f"{name}_q{int(round(q * 100)):02d}"] = self.quantile(k, q)
        out["gap"] = out["same_mean"] - out["diff_mean"]
        pooled = np.sqrt((out["same_std"] ** 2 + out["diff_std"] ** 2) / 2)
        out["d_prime"] = out["gap"] / pooled if pooled > 0 else float("nan")   # gap in pooled stds
        return out


def hist_quantile(counts: np.ndarray, edges: np.ndarray, q: float) -> float:
    """The q-quantile of values binned as `counts` over `edges`, interpolated inside its bin."""
    total = counts.sum()
    if total <= 0:
        return float("nan")
    cum = np.cumsum(counts)
    target = q * total
    b = int(np.searchsorted(cum, target, side="left"))
    b = min(b, len(counts) - 1)
    before = cum[b - 1] if b else 0.0
    frac = (target - before) / counts[b] if counts[b] else 0.0
    return float(edges[b] + frac * (edges[b + 1] - edges[b]))


def cosine_stats(X, labels, *, block: int = 1024, bins: int = 2000) -> CosineStats:
    """Same-label vs different-label cosine statistics over all pairs a < b of X (N, d), blockwise."""
    X = np.asarray(X, np.float32)
    if X.ndim != 2 or len(X) != len(labels):
        raise ValueError(f"X must be (N, d) with one label per row: X {X.shape}, {len(labels)} labels")
    names, codes = group_codes(labels)
    n = len(X)
    block = int(min(block, max(n, 1)))
    pad = -n % block
    Xn = _normalise(jnp.asarray(np.pad(X, ((0, pad), (0, 0)))))            # (Np, d)
    cj = jnp.asarray(np.pad(codes, (0, pad), constant_values=-1))
    acc = None
    for i in range((n + pad) // block):
        part = _row_block(Xn, cj, i, block, bins, len(names))
        acc = part if acc is None else jax.tree.map(jnp.add, acc, part)
    counts, sums, sumsq, hist, ghist = (np.asarray(a, np.float64) for a in acc)
    return CosineStats(counts, sums, sumsq, hist, ghist, names)


def group_mean_matrix(X, labels) -> tuple[np.ndarray, np.ndarray]:
    """(names (G,), M (G, G)): mean cosine between rows of group g and of group h; the diagonal
    excludes self-pairs. Exact, O(N d): sums of similarities are dot products of group sums."""
    names, codes = group_codes(labels)
    Xn = _normalise(jnp.asarray(np.asarray(X, np.float32)))
    onehot = jax.nn.one_hot(jnp.asarray(codes), len(names), dtype=Xn.dtype)         # (N, G)
    S = jnp.matmul(onehot.T, Xn, precision=jax.lax.Precision.HIGHEST)                 # (G, d) group sums
    total = np.asarray(jnp.matmul(S, S.T, precision=jax.lax.Precision.HIGHEST), np.float64)  # (G, G)
    sizes = np.bincount(codes, minlength=len(names)).astype(np.float64)
    self_sim = np.asarray(onehot.T @ (Xn * Xn).sum(1), np.float64)                    # (G,) Σ ||x̂||²
    pairs = np.outer(sizes, sizes)
    np.fill_diagonal(pairs, sizes * (sizes - 1))
    total[np.diag_indices_from(total)] -= self_sim
    with np.errstate(invalid="ignore", divide="ignore"):
        return names, total / pairs


# ----------------------------------------------------------------------------- plots


def plot_histograms(stats: dict[str, CosineStats], path: str, title: str = "") -> str:
    """Same-group vs different-group histograms, one panel per variant (e.g. audio, residual)."""
    from jaxdis.eval.plots import plt, save_figure

    fig, axes = plt.subplots(1, len(stats), figsize=(5 * len(stats), 3.6), squeeze=False)
    for ax, (name, st) in zip(axes[0], stats.items()):
        centres = (st.edges[:-1] + st.edges[1:]) / 2
        for k, label in enumerate(("same group", "different group")):
            density = st.hist[k] / max(st.hist[k].sum(), 1) / (st.edges[1] - st.edges[0])
            ax.fill_between(centres, density, step="mid", alpha=0.5, label=f"{label} (mean {st.mean(k):.3f})")
        ax.set_title(name)
        ax.set_xlabel("cosine similarity")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("density")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, dpi=110)


def plot_group_histograms(st: CosineStats, path: str, title: str, max_groups: int = 9) -> str:
    """The blog's per-voice histograms: same-group similarities of the first `max_groups` groups."""
    from jaxdis.eval.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(9, 4))
    centres = (st.edges[:-1] + st.edges[1:]) / 2
    coarse = max(1, st.group_hist.shape[1] // 100)                     # 100 bins, as in the blog
    for g in range(min(max_groups, len(st.groups))):
        h = st.group_hist[g].reshape(-1, coarse).sum(1)
        ax.step(centres.reshape(-1, coarse).mean(1), h, where="mid", label=str(st.groups[g]))
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("pairs")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=3)
    return save_figure(fig, path, dpi=110)


def plot_group_matrix(names, M, path: str, title: str) -> str:
    """Heatmap of the group x group mean-similarity matrix."""
    from jaxdis.eval.plots import plt, save_figure

    size = min(12, 3 + 0.18 * len(names))
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.pcolormesh(M, cmap="viridis")
    if len(names) <= 60:
        ax.set_xticks(np.arange(len(names)) + 0.5, names, rotation=90, fontsize=6)
        ax.set_yticks(np.arange(len(names)) + 0.5, names, fontsize=6)
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    return save_figure(fig, path, dpi=110)
