"""Linear probes: how much of a label a representation still carries."""

from __future__ import annotations

import numpy as np


def probe_split(y, *, test_frac: float = 0.25, seed: int = 0, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices: by `groups` when given (no group on both sides), else stratified
    by y when every class has >= 2 rows and the test set can hold every class, else random."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    y = np.asarray(y).astype(str)
    idx = np.arange(len(y))
    if groups is not None:
        split = GroupShuffleSplit(n_splits=1, test_size=test_frac, random_state=seed)
        return next(split.split(idx, y, np.asarray(groups).astype(str)))
    _, counts = np.unique(y, return_counts=True)
    stratify = y if counts.min() >= 2 and round(test_frac * len(y)) >= len(counts) else None
    return train_test_split(idx, test_size=test_frac, random_state=seed, stratify=stratify)


def logistic_classifier(X, y, *, max_iter: int = 2000, seed: int | None = None):
    """A logistic regression on standardised features, fitted to (X, y): the linear probe."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed)).fit(X, y)


def probe_accuracy(X, y, *, test_frac: float = 0.25, seed: int = 0, groups=None) -> float:
    """Held-out accuracy of a standardised logistic regression predicting y (N,) from X (N, d).

    Chance is about 1 / number of classes. Classes absent from the training split count as errors."""
    X = np.asarray(X, np.float32)
    y = np.asarray(y).astype(str)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X must be (N, d) with one label per row: X {X.shape}, {len(y)} labels")
    train, test = probe_split(y, test_frac=test_frac, seed=seed, groups=groups)
    if len(np.unique(y[train])) < 2:
        return float(np.mean(y[test] == y[train][0]))
    clf = logistic_classifier(X[train], y[train], max_iter=300)
    return float(clf.score(X[test], y[test]))


# --------------------------------------------------------------------------- cross-validated, paired probes

def group_folds(groups, n_folds: int = 0, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) row indices of a grouped K-fold: each group lands in exactly one test fold and
    never on both sides of a fold. n_folds <= 0 (or >= the number of groups): leave one group out.
    Groups are dealt to folds round-robin in an order shuffled by `seed`."""
    g = np.asarray(groups).astype(str)
    names = np.unique(g)
    if len(names) < 2:
        raise ValueError("cross-validation by group needs at least two groups")
    k = len(names) if n_folds <= 0 else min(int(n_folds), len(names))
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of = dict(zip(names[order], np.arange(len(names)) % k))
    fold = np.array([fold_of[v] for v in g])
    idx = np.arange(len(g))
    return [(idx[fold != f], idx[fold == f]) for f in range(k)]


def probe_correct(X, y, groups, *, n_folds: int = 0, seed: int = 0, max_iter: int = 300) -> np.ndarray:
    """(N,) bool: whether a probe fitted on the other groups' rows predicts each row's label.

    The probe is `logistic_classifier` (as in `probe_accuracy`), cross-validated over the folds
    of `group_folds`, so every row is tested exactly once, by a probe that never saw its group.
    Classes absent from a fold's training rows count as errors. The folds depend only on
    (groups, n_folds, seed): two representations of the same rows are scored on the same folds."""
    X = np.asarray(X, np.float32)
    y = np.asarray(y).astype(str)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X must be (N, d) with one label per row: X {X.shape}, {len(y)} labels")
    correct = np.zeros(len(y), bool)
    for train, test in group_folds(groups, n_folds, seed):
        if len(np.unique(y[train])) < 2:
            correct[test] = y[test] == y[train][0]
            continue
        clf = logistic_classifier(X[train], y[train], max_iter=max_iter)
        correct[test] = clf.predict(X[test]) == y[test]
    return correct


def clustered_se(v, groups) -> float:
    """Standard error of mean(v) when rows are correlated within groups (cluster-robust, with the
    G / (G − 1) small-sample factor): with equal group sizes, std of the group means / √G."""
    v = np.asarray(v, np.float64)
    g = np.asarray(groups).astype(str)
    names, inv = np.unique(g, return_inverse=True)
    if len(names) < 2:
        return float("nan")
    resid = np.bincount(inv, weights=v - v.mean(), minlength=len(names))   # Σ over each group
    return float(np.sqrt(len(names) / (len(names) - 1) * np.sum(resid ** 2)) / len(v))


def paired_probe_accuracy(X, X_base, y, groups, *, n_folds: int = 0, seed: int = 0) -> dict[str, float]:
    """Cross-validated probe accuracy of X and of a baseline X_base on the SAME rows and folds,
    and their paired difference with a standard error clustered by group:

    {acc, acc_se, base_acc, base_acc_se, delta, delta_se, groups}. `delta` = acc − base_acc, the
    mean over rows of (X right) − (X_base right); delta / delta_se is a z-score across groups
    (e.g. held-out speakers), the unit the probe is meant to generalise over."""
    g = np.asarray(groups).astype(str)
    a = probe_correct(X, y, g, n_folds=n_folds, seed=seed).astype(np.float64)
    b = probe_correct(X_base, y, g, n_folds=n_folds, seed=seed).astype(np.float64)
    return {"acc": float(a.mean()), "acc_se": clustered_se(a, g), "base_acc": float(b.mean()),
            "base_acc_se": clustered_se(b, g), "delta": float((a - b).mean()), "delta_se": clustered_se(a - b, g),
            "groups": float(len(np.unique(g)))}
