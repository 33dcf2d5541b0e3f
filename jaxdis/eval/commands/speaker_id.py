"""`eval.py speaker-id`: the few-label speaker-ID protocol on any embeddings.

    # a trained workdir, on the speakers it held out from training (or --manifest M)
    python eval.py speaker-id --workdir runs/autodecompose --out results/sid
    # any model's precomputed utterance embeddings (GE2E, ECAPA, your own)
    python eval.py speaker-id --embeddings X.npy --labels L.csv --out results/sid_ge2e
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from jaxdis.eval.inputs import add_embedding_inputs, load_embedding_inputs
from jaxdis.eval.report import markdown_table
from jaxdis.eval.speaker_id import DEFAULT_BUDGETS, metrics_for, speaker_id_f1


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_embedding_inputs(p)
    p.add_argument("--speaker-col", default="speaker")
    p.add_argument("--duration-col", default="duration", help="utterance length in seconds")
    p.add_argument("--budgets", type=float, nargs="+", default=list(DEFAULT_BUDGETS),
                   help="seconds of labelled audio per speaker")
    p.add_argument("--repeats", type=int, default=10, help="random draws per budget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-plots", action="store_true", help="skip the t-SNE map and F1 curve")
    p.add_argument("--out", required=True, help="output directory")


def run(args) -> dict:
    columns = [args.speaker_col, args.duration_col] if args.embeddings else ["speaker", "duration"]
    embeddings, labels = load_embedding_inputs(args, columns)
    speakers, durations = labels[columns[0]].to_numpy(), labels[columns[1]].to_numpy(float)
    os.makedirs(args.out, exist_ok=True)
    table, metrics, rows = {}, {}, []
    for name, x in embeddings.items():
        results = speaker_id_f1(x, speakers, durations, args.budgets, args.repeats, args.seed)
        if not results:
            raise SystemExit(f"no budget in {args.budgets} leaves every speaker a test utterance")
        table[name] = results
        metrics.update(metrics_for(name, results))
        rows.append({"encoder": name, **{f"{r.seconds:g}s": f"{r.f1_mean:.3f} ± {r.f1_std:.3f}" for r in results}})
    md = (f"Macro-F1, {len(set(speakers))} speakers, {len(speakers)} utterances, {args.repeats} draws per budget\n\n"
          + markdown_table(rows))
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(md + "\n")
    print(md)
    if not args.no_plots:
        from jaxdis.eval.plots import embedding_map, f1_curves

        f1_curves(table, os.path.join(args.out, "f1.png"))
        first = next(iter(embeddings))
        embedding_map(embeddings[first], speakers, os.path.join(args.out, f"tsne_{first}.png"),
                      title=f"{first} embeddings by speaker", seed=args.seed)
    return metrics
