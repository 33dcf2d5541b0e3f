"""Where an evaluation's embeddings come from: a trained workdir (embedding a corpus with
the method's encoders) or precomputed files (any model's embeddings + a labels CSV)."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd


def add_embedding_inputs(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("input: a trained workdir, or precomputed embeddings")
    src.add_argument("--workdir", help="trained jaxdis workdir (config.json + checkpoints)")
    src.add_argument("--manifest", help="corpus to test on (default: the workdir's held-out split)")
    src.add_argument("--embeddings", help="(N, d) .npy or parquet of utterance embeddings")
    src.add_argument("--labels", help="CSV, one row per embedding")


def load_embedding_inputs(args, columns: list[str]) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """({encoder: (N, d)}, labels table with `columns`), rows aligned. Precomputed input
    is reported under the encoder name "embeddings"."""
    if args.embeddings:
        from jaxdis.embeddings import load_embeddings

        if not args.labels:
            raise SystemExit("--embeddings needs --labels (a CSV with one row per embedding)")
        x = load_embeddings(args.embeddings)
        labels = pd.read_csv(args.labels, dtype=str, keep_default_na=False)
        missing = [c for c in columns if c not in labels.columns]
        if missing:
            raise SystemExit(f"{args.labels} has no {', '.join(map(repr, missing))} column "
                             f"(columns: {', '.join(labels.columns)})")
        if len(labels) != len(x):
            raise SystemExit(f"{args.embeddings} has {len(x)} rows but {args.labels} has {len(labels)}")
        return {"embeddings": x}, labels
    if not args.workdir:
        raise SystemExit("give --workdir (a trained model) or --embeddings with --labels")
    return embed_with_workdir(args.workdir, args.manifest)


def embed_with_workdir(workdir: str, manifest: str | None = None) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """({encoder: (N, d)}, corpus table) of a trained workdir's encoders on `manifest`
    (default: the speakers or utterances the run held out from training)."""
    from jaxdis.data.corpus import load_corpus
    from jaxdis.methods.common import heldout_corpus
    from jaxdis.train import restore

    config, method, params, model_state = restore(workdir)
    corpus = load_corpus(manifest) if manifest else heldout_corpus(config)
    kept, embeddings = method.embed(params, model_state, corpus)
    return embeddings, kept.table
