"""Blockwise cosine statistics == brute force on small N; group-mean matrix; probes; plots."""

import numpy as np
import pytest

from jaxdis.eval.cosine import cosine_stats, group_mean_matrix, hist_quantile, plot_histograms
from jaxdis.eval.probes import probe_accuracy


def brute(X, labels):
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = Xn @ Xn.T
    a, b = np.triu_indices(len(X), k=1)
    same = labels[a] == labels[b]
    return S[a, b][same], S[a, b][~same], S


@pytest.mark.parametrize("block", [7, 64])          # ragged tiles + padding, and one tile
def test_blockwise_stats_match_brute_force(block):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.array(list("abcde")), 10)[rng.permutation(50)]
    centres = {g: rng.normal(size=8) for g in "abcde"}
    X = np.stack([centres[g] + 0.7 * rng.normal(size=8) for g in labels]).astype(np.float32)
    same, diff, _ = brute(X.astype(np.float64), labels)
    st = cosine_stats(X, labels, block=block, bins=2000).summary()
    assert st["same_pairs"] == len(same) and st["diff_pairs"] == len(diff)
    assert st["same_mean"] == pytest.approx(same.mean(), abs=1e-5)
    assert st["diff_mean"] == pytest.approx(diff.mean(), abs=1e-5)
    assert st["same_std"] == pytest.approx(same.std(), abs=1e-4)
    assert st["diff_std"] == pytest.approx(diff.std(), abs=1e-4)
    for q in (5, 25, 50, 75, 95):   # histogram quantiles: between the q -/+ 2% sample quantiles, one bin slack
        for name, v in (("diff", diff), ("same", same)):
            lo, hi = np.quantile(v, [q / 100 - 0.02, q / 100 + 0.02])
            assert lo - 1e-3 <= st[f"{name}_q{q:02d}"] <= hi + 1e-3


def test_group_mean_matrix_matches_brute_force():
    rng = np.random.default_rng(1)
    labels = np.array(list("aabbbcccc"))
    X = rng.normal(size=(9, 5))
    _, _, S = brute(X, labels)
    names, M = group_mean_matrix(X, labels)
    for i, g in enumerate(names):
        for j, h in enumerate(names):
            block = S[np.ix_(labels == g, labels == h)]
            want = (block.sum() - np.trace(block)) / (block.size - len(block)) if g == h else block.mean()
            assert M[i, j] == pytest.approx(want, abs=1e-5)


def test_hist_quantile_interpolates():
    edges = np.linspace(0, 4, 5)
    assert hist_quantile(np.array([1.0, 1, 1, 1]), edges, 0.5) == pytest.approx(2.0)
    assert hist_quantile(np.array([0.0, 2, 0, 0]), edges, 0.25) == pytest.approx(1.25)


def test_probe_accuracy_sees_signal_and_chance():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 40)
    X = np.eye(4)[y] * 3 + rng.normal(size=(160, 4))
    assert probe_accuracy(X, y) > 0.9
    assert probe_accuracy(rng.normal(size=(160, 4)), y) < 0.5
    groups = np.arange(160) % 10
    assert probe_accuracy(X, y, groups=groups) > 0.9


def test_histogram_plot_written(tmp_path):
    rng = np.random.default_rng(0)
    X, labels = rng.normal(size=(30, 4)), np.arange(30) % 3
    path = plot_histograms({"x": cosine_stats(X, labels)}, str(tmp_path / "h.png"))
    assert (tmp_path / "h.png").stat().st_size > 1000 and path.endswith("h.png")
