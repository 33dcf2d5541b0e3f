"""Single-latent analysis of SAEs: which latent alone separates a label, steering, plots.

Ranking: for every latent, the balanced accuracy of the best threshold on its activation
(either direction: "active → class" or "inactive → class") and its AUC. Thresholds and the
top latent are chosen on one part of the data (``fit``) and scored on another, so picking
the best of thousands of latents is not itself a source of accuracy.

Steering: set (or scale) one latent and decode; keeping the SAE's error term
(x + Δz · W_dec), so only that latent's contribution changes (paper Figs. 4-5).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.stats import rankdata

# ---------------------------------------------------------------------------------------
# Ranking single latents


@dataclasses.dataclass
class LatentScores:
    """Per-latent separation of one binary label (positive = the class)."""

    balanced_acc: np.ndarray   # (L,) best-threshold balanced accuracy on the fit rows
    threshold: np.ndarray      # (L,) the threshold: predict positive when sign·(z − t) > 0
    sign: np.ndarray           # (L,) +1: active → positive; −1: inactive → positive
    auc: np.ndarray            # (L,) ROC AUC of the activation for the positive class

    def top(self, positive_only: bool = False) -> int:
        score = np.where(self.sign > 0, self.balanced_acc, -1.0) if positive_only else self.balanced_acc
        return int(np.argmax(score))


def best_thresholds(z: np.ndarray, y: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best-threshold balanced accuracy of every column of z (N, L) for labels y (N,) bool.

    Sweeps every cut between distinct sorted values (ties, e.g. the many zeros of a sparse
    latent, are never split). Returns (balanced_acc (L,), threshold (L,), sign (L,)).
    """
    z = np.asarray(z, np.float32)
    y = np.asarray(y, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("balanced accuracy needs both classes")
    accs, ths, signs = [], [], []
    for lo in range(0, z.shape[1], chunk):
        zc = z[:, lo:lo + chunk]  # (N, C)
        order = np.argsort(zc, axis=0, kind="stable")
        zs = np.take_along_axis(zc, order, axis=0)
        ys = y[order]
        # Cut after row i (rows ≤ i predicted negative): TPR = (P − pos≤i)/P, TNR = neg≤i/Nn.
        tnr = np.cumsum(~ys, axis=0) / n_neg
        tpr = 1.0 - np.cumsum(ys, axis=0) / n_pos
        bacc = 0.5 * (tpr + tnr)  # (N, C)
        valid = np.ones_like(bacc, bool)
        valid[:-1] = zs[1:] > zs[:-1]  # only between distinct values (the last cut: all negative)
        both = np.where(valid, np.maximum(bacc, 1.0 - bacc), 0.5)
        best = np.argmax(both, axis=0)  # (C,)
        cols = np.arange(zc.shape[1])
        acc = np.maximum(both[best, cols], 0.5)
        nxt = np.minimum(best + 1, len(zs) - 1)
        th = np.where(best < len(zs) - 1, 0.5 * (zs[best, cols] + zs[nxt, cols]), zs[-1, cols])
        sign = np.where(bacc[best, cols] >= 0.5, 1, -1)
        accs.append(acc)
        ths.append(th)
        signs.append(sign)
    return np.concatenate(accs), np.concatenate(ths), np.concatenate(signs)


def auc_columns(z: np.ndarray, y: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """ROC AUC of every column of z (N, L) for labels y (Mann-Whitney, ties averaged)."""
    y = np.asarray(y, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    out = []
    for lo in range(0, z.shape[1], chunk):
        ranks = rankdata(z[:, lo:lo + chunk], axis=0)  # (N, C)
        out.append((ranks[y].sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return np.concatenate(out)


def score_latents(z: np.ndarray, y: np.ndarray) -> LatentScores:
    """LatentScores of z (N, L) for the binary label y (N,)."""
    acc, th, sign = best_thresholds(z, y)
    return LatentScores(acc, th, sign, auc_columns(z, y))


def balanced_accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    pred, y = np.asarray(pred, bool), np.asarray(y, bool)
    return 0.5 * (float(pred[y].mean()) + float((~pred[~y]).mean()))


def predict(z_col: np.ndarray, threshold: float, sign: int) -> np.ndarray:
    """The single-latent classifier: positive when sign · (z − threshold) > 0."""
    return sign * (np.asarray(z_col) - threshold) > 0


@dataclasses.dataclass
class TopLatent:
    """The best single latent for one class (one-vs-rest), chosen on fit rows."""

    cls: str
    index: int
    sign: int
    threshold: float
    balanced_acc_fit: float
    balanced_acc: float        # on the held-out rows (= fit when there are none)
    auc: float                 # held-out AUC (sign-corrected: ≥ 0.5 when it generalises)


def top_latent(z: np.ndarray, labels: np.ndarray, cls, fit: np.ndarray, test: np.ndarray,
               positive_only: bool = False) -> tuple[TopLatent, LatentScores]:
    """Top latent for ``labels == cls`` chosen on rows `fit`, scored on rows `test`."""
    y = np.asarray(labels) == cls
    scores = score_latents(z[fit], y[fit])
    j = scores.top(positive_only)
    s = int(scores.sign[j])
    pred = predict(z[test, j], scores.threshold[j], s)
    auc = float(auc_columns(s * z[test][:, [j]], y[test])[0])
    return TopLatent(str(cls), j, s, float(scores.threshold[j]), float(scores.balanced_acc[j]),
                     balanced_accuracy(pred, y[test]), auc), scores


def group_split(groups: np.ndarray, heldout: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fit, test) boolean row masks, disjoint in `groups` (e.g. speakers). heldout 0: both all."""
    groups = np.asarray(groups).astype(str)
    if heldout <= 0:
        every = np.ones(len(groups), bool)
        return every, every
    names = np.unique(groups)
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(names)[: max(1, int(round(heldout * len(names))))])
    test = np.array([g in held for g in groups])
    return ~test, test


def column_top_latents(z: np.ndarray, labels: np.ndarray, fit: np.ndarray, test: np.ndarray) -> list[TopLatent]:
    """One-vs-rest top latents for each class of a label column (one entry if binary)."""
    labels = np.asarray(labels).astype(str)
    classes = sorted(set(labels[fit]) & set(labels[test]))
    if len(classes) < 2:
        return []
    if len(set(labels)) == 2:
        classes = classes[:1]  # binary: "a vs b" and "b vs a" pick the same latent
    return [top_latent(z, labels, c, fit, test)[0] for c in classes]


# ---------------------------------------------------------------------------------------
# Steering


def steer(sae, x: np.ndarray, latent: int, value: float | None = None, scale: float | None = None,
          keep_error: bool = True) -> np.ndarray:
    """Raw-space embeddings with one latent set to `value` (a number or one per row) or
    multiplied by `scale`.

    keep_error: x + (x̂' − x̂), leaving what the SAE does not reconstruct in place;
    otherwise the edited reconstruction x̂' alone. Both in the raw space (an L2 SAE's
    reconstructions at each row's norm).
    """
    z = sae.latents(x)
    z_new = z.copy()
    if value is not None:
        z_new[:, latent] = value
    elif scale is not None:
        z_new[:, latent] *= scale
    else:
        raise ValueError("give value or scale")
    x_hat, x_new = sae.decode(z, like=x), sae.decode(z_new, like=x)
    return np.asarray(x, np.float32) + (x_new - x_hat) if keep_error else x_new


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def relative_similarity(x: np.ndarray, target_centroid: np.ndarray, source_centroid: np.ndarray) -> np.ndarray:
    """cos(x, target centroid) − cos(x, source centroid), per row (paper Fig. 5)."""
    xu = unit(np.asarray(x, np.float64))
    return xu @ unit(target_centroid) - xu @ unit(source_centroid)


# ---------------------------------------------------------------------------------------
# Plots


def _plt():
    """pyplot (Agg) and save_figure, imported on first use so the probes stay light."""
    from jaxdis.eval.plots import plt, save_figure
    return plt, save_figure


def plot_top_latent_grid(rows: list[dict], col: str, path: str) -> str:
    """Top-latent balanced accuracy against latent count, one line per k (paper Figs. 2-3).

    rows: dicts with n_latents, k, balanced_acc (seeds are averaged)."""
    plt, save_figure = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for k in sorted({r["k"] for r in rows}):
        sizes = sorted({r["n_latents"] for r in rows if r["k"] == k})
        accs = [np.mean([r["balanced_acc"] for r in rows if r["k"] == k and r["n_latents"] == n]) for n in sizes]
        ax.plot(sizes, accs, marker="o", label=f"k = {k}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("latents L")
    ax.set_ylabel("top-latent balanced accuracy (held out)")
    ax.set_title(f"One latent alone: {col}")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def feature_splitting(saes: list, latents: dict, anchor: tuple[str, int], labels: np.ndarray,
                      max_per_sae: int = 4, min_cos: float = 0.4) -> list[dict]:
    """Latents of every SAE whose decoder direction is close to an anchor latent.

    anchor: (sae name, latent index), usually the top latent of the smallest SAE. Returns
    rows {sae, n_latents, index, cos, profile (mean activation per class of `labels`)}.
    """
    by_name = {s.label: s for s in saes}
    ref = unit(by_name[anchor[0]].decoder[anchor[1]])
    labels = np.asarray(labels).astype(str)
    classes = sorted(set(labels))
    rows = []
    for sae in sorted(saes, key=lambda s: s.n_latents):
        cos = unit(sae.decoder) @ ref  # (L,)
        picks = [j for j in np.argsort(-cos)[:max_per_sae] if cos[j] >= min_cos] or [int(np.argmax(cos))]
        z = latents[sae.label]
        for j in picks:
            profile = np.array([z[labels == c, j].mean() for c in classes])
            rows.append(dict(sae=sae.label, n_latents=sae.n_latents, index=int(j), cos=float(cos[j]),
                             profile=profile))
    return rows


def plot_feature_splitting(rows: list[dict], classes: list[str], title: str, path: str) -> str:
    """Heatmap: latents near the anchor (rows, by SAE size) × mean activation per class."""
    plt, save_figure = _plt()
    mat = np.stack([r["profile"] / max(r["profile"].max(), 1e-12) for r in rows])
    fig, ax = plt.subplots(figsize=(max(5, 0.35 * len(classes) + 3), 0.35 * len(rows) + 1.5))
    im = ax.imshow(mat, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"L={r['n_latents']} #{r['index']} (cos {r['cos']:.2f})" for r in rows], fontsize=7)
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels(classes, rotation=90, fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="mean activation / row max")
    return save_figure(fig, path)


def plot_steering(before: np.ndarray, after: np.ndarray, sweep: list[tuple[float, float]], title: str,
                  path: str) -> str:
    """Relative-similarity histograms before/after steering (paper Fig. 5) and flip rate
    against the steering scale."""
    plt, save_figure = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    bins = np.linspace(min(before.min(), after.min()), max(before.max(), after.max()), 40)
    a.hist(before, bins=bins, alpha=0.6, label="before")
    a.hist(after, bins=bins, alpha=0.6, label="after")
    a.axvline(0, color="k", lw=0.8)
    a.set_xlabel("cos(x, target centroid) − cos(x, source centroid)")
    a.set_ylabel("utterances")
    a.legend()
    a.set_title(title, fontsize=9)
    if sweep:
        s, f = zip(*sweep)
        b.plot(s, f, marker="o")
    b.set_xlabel("edit strength (1: the edit applied)")
    b.set_ylabel("classifier flip rate")
    b.set_ylim(-0.02, 1.02)
    b.grid(alpha=0.3)
    return save_figure(fig, path)
