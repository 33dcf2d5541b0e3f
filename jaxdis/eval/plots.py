"""Plots shared by the evaluations (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig, path: str, dpi: int = 120) -> str:
    """Tight layout, the PNG written (its folder made), the figure closed; returns `path`."""
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def embedding_map(embeddings: np.ndarray, labels, path: str, title: str = "", seed: int = 0,
                  max_points: int = 3000) -> str:
    """A 2-D t-SNE map of embeddings coloured by label, saved as PNG."""
    from sklearn.manifold import TSNE

    labels = np.asarray(labels).astype(str)
    if len(embeddings) > max_points:  # t-SNE is quadratic; a fixed random subset keeps it quick
        keep = np.random.default_rng(seed).choice(len(embeddings), max_points, replace=False)
        embeddings, labels = embeddings[keep], labels[keep]
    perplexity = float(min(30, max(2, (len(embeddings) - 1) // 3)))
    xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(np.asarray(embeddings, np.float64))
    names = sorted(set(labels))
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(7, 6))
    for i, name in enumerate(names):
        sel = labels == name
        ax.scatter(xy[sel, 0], xy[sel, 1], s=6, color=cmap(i % cmap.N), label=name)
    if len(names) <= 24:
        ax.legend(fontsize=6, markerscale=2, ncol=2, loc="best")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return save_figure(fig, path)


def f1_curves(table: dict[str, list], path: str, title: str = "Speaker ID from few labels") -> str:
    """Macro-F1 against seconds of labelled audio, one line per encoder (BudgetResult lists)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, results in table.items():
        secs = [r.seconds for r in results]
        ax.errorbar(secs, [r.f1_mean for r in results], yerr=[r.f1_std for r in results], marker="o",
                    capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("labelled seconds per speaker")
    ax.set_ylabel("macro-F1")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return save_figure(fig, path)


def duration_histogram(durations: np.ndarray, path: str, title: str = "") -> str:
    """Histogram of utterance durations in seconds."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(durations, bins=min(50, max(5, len(durations) // 5)), color="#4477aa")
    ax.set_xlabel("seconds")
    ax.set_ylabel("utterances")
    ax.set_title(f"{title}: {len(durations)} utterances, {durations.sum() / 3600:.2f} h")
    return save_figure(fig, path)


def score_histogram(scores: np.ndarray, same: np.ndarray, path: str, title: str = "") -> str:
    """Target vs non-target trial scores."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(scores.min(), scores.max(), 60)
    ax.hist(scores[~same], bins=bins, density=True, alpha=0.6, label="different speaker")
    ax.hist(scores[same], bins=bins, density=True, alpha=0.6, label="same speaker")
    ax.set_xlabel("cosine score")
    ax.legend()
    ax.set_title(title)
    return save_figure(fig, path)
