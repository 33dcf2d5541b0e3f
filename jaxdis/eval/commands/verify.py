"""`eval.py verify`: EER and minDCF (p_target 0.01) over same/different-speaker trials.

    python eval.py verify --embeddings X.npy --labels L.csv --out results/verify
    python eval.py verify --workdir runs/autodecompose --out results/verify_ad   # held-out voices
    python eval.py verify --embeddings X.npy --labels L.csv --trials T.csv --out DIR  # columns i, j[, label]
    python eval.py verify --workdir runs/ecapa --ge2e --out DIR   # + resemblyzer's GE2E on the same trials
    python eval.py verify --embeddings X.npy --labels L.csv --heldout-of runs/ecapa --out DIR
        # precomputed embeddings scored on the voices a trained run held out

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
    p.add_argument("--heldout-of", metavar="WORKDIR",
                   help="with --embeddings: keep only rows of the speakers that WORKDIR's run held out")
    p.add_argument("--ge2e", action="store_true",
                   help="also score resemblyzer's GE2E embeddings of the same utterances (needs a path column; "
                        "cached under the jaxdis cache)")
    p.add_argument("--trials", help="CSV of trials: row indices i, j and optionally label (1 = same speaker)")
    p.add_argument("--p-target", type=float, default=0.01)
    p.add_argument("--max-trials", type=int, default=2_000_000, help="subsample all-pairs trials above this")
    p.add_argument("--out", required=True, help="output directory")


def heldout_rows(workdir: str, speakers: np.ndarray) -> np.ndarray:
    """Boolean mask of rows whose speaker the run in `workdir` held out from training."""
    from jaxdis.methods.common import heldout_corpus
    from jaxdis.train.checkpoint import load_config

    held = heldout_corpus(load_config(workdir)).table["speaker"].astype(str).unique()
    keep = np.isin(speakers, held)
    if not keep.any():
        raise SystemExit(f"none of the {len(held)} speakers held out by {workdir} have embeddings here")
    return keep


def ge2e_for(paths: list[str], cache_dir: str | None = None) -> np.ndarray:
    """(N, 256) GE2E embeddings of audio files, cached by (path, size, mtime)."""
    import hashlib

    from jaxdis.data.audio import load_audio
    from jaxdis.data.corpus import default_cache_dir
    from jaxdis.embeddings import ge2e_embeddings

    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    path = os.path.join(cache_dir or default_cache_dir(), "ge2e", h.hexdigest()[:24] + ".npy")
    if os.path.exists(path):
        return np.load(path)
    x = ge2e_embeddings([load_audio(p, 16000) for p in paths])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path + ".tmp.npy", x)
    os.replace(path + ".tmp.npy", path)
    return x


def run(args) -> dict:
    import pandas as pd

    from jaxdis.eval.plots import score_histogram
    from jaxdis.eval.verification import all_pairs, cosine_scores, eer, min_dcf

    col = args.speaker_col if args.embeddings else "speaker"
    embeddings, table = load_embedding_inputs(args, [col])
    speakers = table[col].to_numpy().astype(str)
    if args.heldout_of:
        if args.trials:
            raise SystemExit("--trials index the rows as given; do not combine them with --heldout-of")
        keep = heldout_rows(args.heldout_of, speakers)
        print(f"{keep.sum()} of {len(keep)} rows belong to speakers held out by {args.heldout_of}")
        embeddings = {k: v[keep] for k, v in embeddings.items()}
        speakers, table = speakers[keep], table[keep].reset_index(drop=True)
    if args.ge2e:
        if "path" not in table.columns:
            raise SystemExit("--ge2e needs the audio paths: use --workdir/--manifest or labels with a path column")
        embeddings["ge2e"] = ge2e_for([str(p) for p in table["path"]])
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
