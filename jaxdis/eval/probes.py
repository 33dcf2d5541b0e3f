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
