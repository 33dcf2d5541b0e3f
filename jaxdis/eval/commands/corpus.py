"""`eval.py corpus`: what a corpus holds, and which of its files cannot be used.

    python eval.py corpus --manifest builtin --out results/corpus
    python eval.py corpus --manifest data/manifest.csv --out results/corpus --skip-bad

Every file is decoded (that is how corrupt or silent ones are found). Bad files never stop
the summary: they are counted in ``num_unreadable``, printed one per line and listed in
``DIR/unreadable.csv``. metrics.json: num_utterances (rows of the corpus), num_speakers,
hours (of usable audio), num_unreadable, num_usable, seconds.{min,mean,median,max},
minutes_per_speaker.{min,mean,max}. Plot: DIR/durations.png.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True,
                   help="manifest .csv/.jsonl, a LibriSpeech root, builtin or builtin:tiny")
    p.add_argument("--skip-bad", action="store_true",
                   help="also write DIR/usable.csv, a manifest of the usable files only (bad files are "
                        "counted and listed either way)")
    p.add_argument("--out", required=True, help="output directory for metrics.json and durations.png")


def _seconds(path: str) -> float:
    from jaxdis.data.audio import read_audio

    mono, sr = read_audio(path)
    return len(mono) / sr


def run(args) -> dict:
    from jaxdis.data.audio import AudioError
    from jaxdis.data.corpus import load_corpus, map_audio
    from jaxdis.eval.plots import duration_histogram

    corpus = load_corpus(args.manifest)
    results = list(map_audio(corpus, _seconds, desc=f"reading {corpus.name}"))
    ok = np.array([not isinstance(r, AudioError) for r in results])
    bad = [r for r in results if isinstance(r, AudioError)]
    seconds = np.array([r for r in results if not isinstance(r, AudioError)], dtype=np.float64)
    os.makedirs(args.out, exist_ok=True)

    if bad:
        print(f"{len(bad)} of {len(corpus)} files cannot be used:")
        for err in bad:
            print(f"  unreadable: {err.path} ({err.reason})")
        ids = corpus.table["utt_id"][~ok].tolist()
        pd.DataFrame({"utt_id": ids, "path": [e.path for e in bad], "reason": [e.reason for e in bad]}).to_csv(
            os.path.join(args.out, "unreadable.csv"), index=False)
    if args.skip_bad:
        corpus.subset(ok).table.to_csv(os.path.join(args.out, "usable.csv"), index=False)
    if len(seconds):
        duration_histogram(seconds, os.path.join(args.out, "durations.png"), title=corpus.name)

    metrics = {"num_utterances": len(corpus), "num_speakers": len(corpus.speakers),
               "hours": float(seconds.sum() / 3600), "num_unreadable": len(bad), "num_usable": int(ok.sum())}
    if len(seconds):
        per_speaker = pd.Series(seconds).groupby(corpus.table["speaker"][ok].to_numpy()).sum() / 60
        metrics["seconds"] = {"min": seconds.min(), "mean": seconds.mean(), "median": float(np.median(seconds)),
                              "max": seconds.max()}
        metrics["minutes_per_speaker"] = {"min": per_speaker.min(), "mean": per_speaker.mean(),
                                          "max": per_speaker.max()}
    print(f"{corpus.name}: {metrics['num_utterances']} utterances, {metrics['num_speakers']} speakers, "
          f"{metrics['hours']:.3f} h usable, {metrics['num_unreadable']} unreadable")
    return metrics
