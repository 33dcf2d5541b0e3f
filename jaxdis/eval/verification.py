"""Speaker verification: trials, cosine scores, EER and minDCF.

EER: the operating point where the false-acceptance rate (FAR) equals the
false-rejection rate (FRR), found on the sorted scores and linearly interpolated between
the two thresholds where FAR − FRR changes sign (NIST style). minDCF: the minimum over
thresholds of c_miss·P_miss·p_target + c_fa·P_fa·(1 − p_target), normalised by the best
trivial system min(c_miss·p_target, c_fa·(1 − p_target)).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def error_rates(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, FAR, FRR) at every distinct score, accepting score ≥ threshold.
    labels: 1 for target (same speaker) trials, 0 for non-target."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must be matching 1-D arrays")
    n_tar, n_non = labels.sum(), (~labels).sum()
    if n_tar == 0 or n_non == 0:
        raise ValueError("verification needs both target and non-target trials")
    order = np.argsort(-scores, kind="stable")
    s, l = scores[order], labels[order]
    # after accepting the first i trials (highest scores): FA = non-targets accepted, miss = targets rejected
    fa = np.concatenate([[0], np.cumsum(~l)])
    hits = np.concatenate([[0], np.cumsum(l)])
    last = np.concatenate([np.flatnonzero(np.diff(s)), [len(s) - 1]]) + 1  # ends of runs of tied scores
    idx = np.concatenate([[0], last])
    thresholds = np.concatenate([[np.inf], s[last - 1]])
    return thresholds, fa[idx] / n_non, (n_tar - hits[idx]) / n_tar


def eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Equal error rate in [0, 1]."""
    _, far, frr = error_rates(scores, labels)
    diff = far - frr                      # rises from −1 to +1 as the threshold falls
    i = int(np.argmax(diff >= 0))
    if diff[i] == 0 or i == 0:
        return float(far[i])
    # interpolate between points i-1 (FAR < FRR) and i (FAR ≥ FRR)
    t = -diff[i - 1] / (diff[i] - diff[i - 1])
    return float(far[i - 1] + t * (far[i] - far[i - 1]))


def min_dcf(scores: np.ndarray, labels: np.ndarray, p_target: float = 0.01, c_miss: float = 1.0,
            c_fa: float = 1.0) -> float:
    """Normalised minimum detection cost."""
    _, far, frr = error_rates(scores, labels)
    dcf = c_miss * frr * p_target + c_fa * far * (1 - p_target)
    return float(dcf.min() / min(c_miss * p_target, c_fa * (1 - p_target)))


def all_pairs(speakers: Sequence, max_trials: int = 2_000_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, same_speaker) for every pair i < j; above `max_trials` a fixed random subset of
    pairs is kept, with every target pair kept when they fit."""
    spk = np.asarray(speakers).astype(str)
    n = len(spk)
    i, j = np.triu_indices(n, k=1)
    if len(i) > max_trials:
        same = spk[i] == spk[j]
        rng = np.random.default_rng(seed)
        tar = np.flatnonzero(same)
        if len(tar) > max_trials // 2:
            tar = rng.choice(tar, max_trials // 2, replace=False)
        non = rng.choice(np.flatnonzero(~same), max_trials - len(tar), replace=False)
        keep = np.sort(np.concatenate([tar, non]))
        i, j = i[keep], j[keep]
    return i, j, spk[i] == spk[j]


def cosine_scores(embeddings: np.ndarray, i: np.ndarray, j: np.ndarray, block: int = 1_000_000) -> np.ndarray:
    """Cosine similarity of the pairs (i[k], j[k]), in blocks."""
    x = np.asarray(embeddings, np.float64)
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or inf")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return np.concatenate([np.einsum("nd,nd->n", x[i[s:s + block]], x[j[s:s + block]])
                           for s in range(0, len(i), block)]) if len(i) else np.zeros(0)


def verify(embeddings: np.ndarray, speakers: Sequence, p_target: float = 0.01, max_trials: int = 2_000_000,
           seed: int = 0) -> dict[str, float]:
    """EER and minDCF over all same/different-speaker pairs, scored by cosine similarity."""
    if len(embeddings) != len(speakers):
        raise ValueError(f"{len(embeddings)} embeddings but {len(speakers)} speaker labels")
    i, j, same = all_pairs(speakers, max_trials, seed)
    scores = cosine_scores(embeddings, i, j)
    return {"eer": eer(scores, same), "min_dcf": min_dcf(scores, same, p_target),
            "num_target_trials": float(same.sum()), "num_nontarget_trials": float((~same).sum())}
