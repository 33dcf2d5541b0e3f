"""`eval.py corpus`: what a corpus holds, and which files cannot be used.

    python eval.py corpus --manifest builtin --out results/corpus
    python eval.py corpus --manifest data/manifest.csv --out results/corpus
"""

from __future__ import annotations

import argparse
import os

import numpy as np


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, help="manifest .csv/.jsonl, a LibriSpeech root, builtin or builtin:tiny")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--out", required=True, help="output directory")


def run(args) -> dict:
    from jaxdis.data.corpus import load_corpus, load_waveforms
    from jaxdis.eval.plots import duration_histogram

    corpus = load_corpus(args.manifest)
    kept, waves = load_waveforms(corpus, args.sample_rate, skip_bad=True)
    bad = sorted(set(corpus.table["path"]) - set(kept.table["path"]))
    for path in bad:
        print(f"unreadable: {path}")
    durations = np.array([len(w) / args.sample_rate for w in waves])
    os.makedirs(args.out, exist_ok=True)
    if len(durations):
        duration_histogram(durations, os.path.join(args.out, "durations.png"), title=corpus.name)
    metrics = {
        "num_utterances": len(corpus),
        "num_speakers": len(corpus.speakers),
        "hours": float(durations.sum() / 3600),
        "num_unreadable": len(bad),
        "mean_seconds": float(durations.mean()) if len(durations) else 0.0,
    }
    print(", ".join(f"{k}={v:g}" for k, v in metrics.items()))
    return metrics
