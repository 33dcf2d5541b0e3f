"""Few-label speaker identification: the Autodecompose paper's protocol.

For each budget of labelled audio per speaker (10, 15, 30, 60, 120 s by default), draw
utterances of each speaker at random until the budget is reached, fit a logistic
regression on their embeddings, and score macro-F1 on every remaining utterance of those
speakers. Repeat R times; report mean and std. Budgets that leave some speaker without
a test utterance are skipped (the data does not allow them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

DEFAULT_BUDGETS = (10, 15, 30, 60, 120)


@dataclass(frozen=True)
class BudgetResult:
    seconds: float
    f1_mean: float
    f1_std: float
    num_speakers: int
    mean_test_utterances: float


def draw_labelled(rng: np.random.Generator, speakers: np.ndarray, durations: np.ndarray,
                  seconds: float) -> np.ndarray | None:
    """Boolean mask of labelled utterances: per speaker, random utterances until their total
    duration reaches `seconds`. None if some speaker would have no utterance left to test."""
    labelled = np.zeros(len(speakers), bool)
    for spk in np.unique(speakers):
        idx = rng.permutation(np.flatnonzero(speakers == spk))
        take = np.searchsorted(np.cumsum(durations[idx]), seconds) + 1  # first prefix reaching the budget
        if take >= len(idx):
            return None
        labelled[idx[:take]] = True
    return labelled


def _classifier(seed: int):
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed))


def speaker_id_f1(embeddings: np.ndarray, speakers: Sequence, durations: np.ndarray,
                  budgets: Sequence[float] = DEFAULT_BUDGETS, repeats: int = 10, seed: int = 0) -> list[BudgetResult]:
    """Macro-F1 of a logistic regression trained on `budget` seconds per speaker."""
    x = np.asarray(embeddings, np.float64)
    spk = np.asarray(speakers).astype(str)
    dur = np.asarray(durations, np.float64)
    if x.ndim != 2 or len(x) != len(spk) or len(spk) != len(dur):
        raise ValueError(f"embeddings {x.shape}, {len(spk)} speaker labels and {len(dur)} durations must align")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or inf")
    if len(np.unique(spk)) < 2:
        raise ValueError("speaker ID needs at least two speakers")
    results = []
    for seconds in budgets:
        scores, n_test = [], []
        for r in range(repeats):
            rng = np.random.default_rng([seed, int(seconds * 1000), r])
            labelled = draw_labelled(rng, spk, dur, seconds)
            if labelled is None:
                break
            clf = _classifier(seed).fit(x[labelled], spk[labelled])
            pred = clf.predict(x[~labelled])
            scores.append(f1_score(spk[~labelled], pred, average="macro"))
            n_test.append((~labelled).sum())
        if len(scores) == repeats:
            results.append(BudgetResult(float(seconds), float(np.mean(scores)), float(np.std(scores)),
                                        len(np.unique(spk)), float(np.mean(n_test))))
    return results


def metrics_for(encoder: str, results: list[BudgetResult]) -> dict[str, float]:
    """The keys of metrics.json: f1.<encoder>.<seconds>s and f1_std.<encoder>.<seconds>s."""
    out = {}
    for r in results:
        tag = f"{r.seconds:g}s"
        out[f"f1.{encoder}.{tag}"] = r.f1_mean
        out[f"f1_std.{encoder}.{tag}"] = r.f1_std
    return out
