"""`eval.py verify`: EER and minDCF (p_target 0.01) over same/different-speaker trials.

    python eval.py verify --embeddings X.npy --labels L.csv --out results/verify
    python eval.py verify --workdir runs/autodecompose --out results/verify_ad   # held-out voices
    python eval.py verify --embeddings X.npy --labels L.csv --trials T.csv --out DIR  # columns i, j[, label]

metrics.json: ``eer`` and ``min_dcf`` (of the speaker encoder for a workdir), and
``<encoder>.eer`` / ``<encoder>.min_dcf`` for every encoder.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from jaxdis.eval.inputs import add_embedding_inputs, load_embedding_inputs


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_embedding_inputs(p)
    p.add_argument("--speaker-col", default="speaker")
    p.add_argument("--trials", help="CSV of trials: row indices i, j and optionally label (1 = same speaker)")
    p.add_argument("--p-target", type=float, default=0.01)
    p.add_argument("--max-trials", type=int, default=2_000_000, help="subsample all-pairs trials above this")
    p.add_argument("--out", required=True, help="output directory")


def run(args) -> dict:
    import pandas as pd

    from jaxdis.eval.plots import score_histogram
    from jaxdis.eval.verification import all_pairs, cosine_scores, eer, min_dcf

    col = args.speaker_col if args.embeddings else "speaker"
    embeddings, table = load_embedding_inputs(args, [col])
    speakers = table[col].to_numpy().astype(str)
    if args.trials:
        t = pd.read_csv(args.trials)
        i, j = t["i"].to_numpy(int), t["j"].to_numpy(int)
        if max(i.max(), j.max()) >= len(speakers) or min(i.min(), j.min()) < 0:
            raise SystemExit(f"{args.trials}: trial indices outside 0..{len(speakers) - 1}")
        same = t["label"].to_numpy().astype(bool) if "label" in t else speakers[i] == speakers[j]
    else:
        i, j, same = all_pairs(speakers, args.max_trials)
    os.makedirs(args.out, exist_ok=True)
    metrics = {}
    for name, x in embeddings.items():
        scores = cosine_scores(x, i, j)
        metrics[f"{name}.eer"] = eer(scores, same)
        metrics[f"{name}.min_dcf"] = min_dcf(scores, same, args.p_target)
        score_histogram(scores, same, os.path.join(args.out, f"scores_{name}.png"),
                        title=f"{name}: EER {100 * metrics[f'{name}.eer']:.2f} %")
        print(f"{name}: EER {100 * metrics[f'{name}.eer']:.2f} %, minDCF {metrics[f'{name}.min_dcf']:.3f}")
    main = "speaker" if "speaker" in embeddings else next(iter(embeddings))
    metrics["eer"], metrics["min_dcf"] = metrics[f"{main}.eer"], metrics[f"{main}.min_dcf"]
    metrics["num_trials"] = len(i)
    return metrics
