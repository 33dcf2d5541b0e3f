"""`eval.py embed`: a trained workdir's utterance embeddings of a corpus, as files.

    python eval.py embed --workdir runs/autodecompose --out runs/embeddings/ad_heldout
    python eval.py embed --workdir runs/autodecompose --manifest builtin --out runs/embeddings/ad_all

Writes one ``<encoder>.npy`` (N, d) per encoder of the method (Autodecompose: speaker,
content, mel) and ``labels.csv`` (the corpus table without paths, one row per embedding),
the inputs every ``--embeddings X.npy --labels L.csv`` command takes (speaker-id, verify,
residualize, SAE training).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from jaxdis.eval.inputs import embed_with_workdir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", required=True, help="trained jaxdis workdir (config.json + checkpoints)")
    p.add_argument("--manifest", help="corpus to embed (default: the workdir's held-out split); 'builtin' for all")
    p.add_argument("--out", required=True, help="output directory")


def run(args) -> dict:
    embeddings, table = embed_with_workdir(args.workdir, args.manifest)
    os.makedirs(args.out, exist_ok=True)
    for name, x in embeddings.items():
        np.save(os.path.join(args.out, f"{name}.npy"), np.asarray(x, np.float32))
    table.drop(columns="path", errors="ignore").to_csv(os.path.join(args.out, "labels.csv"), index=False)
    print(f"wrote {', '.join(f'{n}.npy {x.shape}' for n, x in embeddings.items())} and labels.csv to {args.out}")
    return {"n": float(len(table)), **{f"dim.{n}": float(x.shape[1]) for n, x in embeddings.items()}}
