"""`eval.py sae-probe`: which single SAE latent separates each label (paper's "top latent").

    python eval.py sae-probe --workdir runs/sae --labels labels.csv --cols gender accent --out results/sae
    # several runs / a grid run: top-latent accuracy against latent count and k, feature splitting
    python eval.py sae-probe --workdir runs/sae_grid --labels labels.csv --cols gender --out results/grid

For each column, each latent is scored by the balanced accuracy of its best threshold
(one-vs-rest per class for multi-class columns); the latent and its threshold are chosen
on speakers of one part (``--group-col``) and scored on held-out speakers
(``--heldout``; 0 scores on the same rows, as the paper does), averaged over ``--splits``
random speaker splits (with few speakers one split's figure moves by whole speakers).

metrics.json (the ``--sae`` SAE, default the first): ``fvu``, ``l0``, ``dead_frac`` (on these
embeddings, raw space), ``top_latent.<col>.balanced_acc``, ``.index``, ``.balanced_acc_fit``,
``.auc``, ``.balanced_acc_sd`` (over splits), ``.index_agreement``; multi-class columns add
``top_latent.<col>.<class>.*`` and report the class mean (index: the best class's latent).
Every SAE: ``sae.<L..._k..._s...>.*``. ``baseline.top_dim.<col>.balanced_acc``: the best
single input dimension, chosen and scored the same way; ``baseline.logreg.<col>.balanced_acc``:
logistic regression on all input dimensions (standardised), fit and scored on the same
splits (one-vs-rest balanced accuracy of its predictions, class mean if multi-class). Also ``verify.original.eer``,
``verify.reconstructed.eer`` (fractions), ``.min_dcf`` and ``verify.eer_delta_points`` on
all same/different-``--group-col`` pairs (jaxdis.eval.verification).
"""

from __future__ import annotations

import argparse
import os
import re
from collections import Counter

import numpy as np

from jaxdis.eval import latents as lat
from jaxdis.eval.probes import logistic_classifier

SKIP_COLS = {"path", "text", "duration", "index"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", nargs="+", required=True, help="SAE run(s) made by train.py --config configs/sae.py")
    p.add_argument("--embeddings", help="(N, d) .npy/parquet (default: the first run's data.embeddings)")
    p.add_argument("--labels", required=True, help="CSV with one row per embedding")
    p.add_argument("--cols", nargs="+", help="label columns to probe (default: every categorical column "
                   "with 2-50 classes other than --group-col)")
    p.add_argument("--group-col", default="speaker", help="held-out split is disjoint in this column")
    p.add_argument("--heldout", type=float, default=0.5, help="fraction of groups held out for scoring (0: none)")
    p.add_argument("--splits", type=int, default=5, help="random group splits (seeds --seed, --seed+1, ...) "
                   "whose held-out scores are averaged")
    p.add_argument("--sae", help="SAE whose figures are the top-level metrics (its label, e.g. L2048_k32_s0)")
    p.add_argument("--split-col", help="classes for the feature-splitting heatmap (default: --group-col)")
    p.add_argument("--no-verify", action="store_true", help="skip EER of original vs reconstructed embeddings")
    p.add_argument("--save-reconstruction", metavar="PATH.npy",
                   help="write the --sae SAE's raw-space reconstructions (N, d) here, e.g. for eval.py verify")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--out", required=True, help="output directory")


def _key(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_-]+", "_", str(name))


def label_by_run(runs: list[tuple[str, list]]) -> list:
    """The SAEs of every (workdir, SAEs) run, in order. Where two runs hold SAEs of the same
    (latents, k, seed), e.g. a plain and a Matryoshka L2048_k32_s0, those runs' labels take
    their directory name; a run given twice is still an error."""
    counts = Counter(s.label for _, saes in runs for s in saes)
    for workdir, saes in runs:
        if any(counts[s.label] > 1 for s in saes):
            for s in saes:
                s.run = _key(os.path.basename(os.path.normpath(workdir)))
    saes = [s for _, group in runs for s in group]
    dup = [label for label, n in Counter(s.label for s in saes).items() if n > 1]
    if dup:
        raise SystemExit(f"two SAEs are both {dup[0]}; give runs with distinct directory names or (latents, k, seed)")
    return saes


def load_inputs(args):
    """(saes, x (N, d), labels DataFrame)."""
    import pandas as pd

    from jaxdis.methods.sae import load_array, load_saes
    from jaxdis.train.checkpoint import load_config

    saes = label_by_run([(w, load_saes(w)) for w in args.workdir])
    path = args.embeddings or load_config(args.workdir[0]).data.embeddings
    if not path:
        raise SystemExit("give --embeddings (the run was not trained on a file)")
    x = load_array(path)
    table = pd.read_csv(args.labels, dtype=str, keep_default_na=False)
    if len(table) != len(x):
        raise SystemExit(f"{path} has {len(x)} rows but {args.labels} has {len(table)}")
    return saes, x, table


def default_cols(table, group_col: str) -> list[str]:
    cols = []
    for c in table.columns:
        if c in SKIP_COLS or c == group_col:
            continue
        n = table[c].nunique()
        if 2 <= n <= 50 and not _numeric(table[c]):
            cols.append(c)
    return cols


def _numeric(series) -> bool:
    try:
        series.astype(float)
        return True
    except ValueError:
        return False


def sae_metrics(sae, x: np.ndarray, z: np.ndarray) -> dict[str, float]:
    """FVU (raw space; an L2 SAE's reconstruction at each row's norm), L0 and dead
    fraction (fires on no row) of one SAE on x."""
    x_hat = sae.decode(z, like=x)
    fvu = float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    return {"fvu": fvu, "l0": float((z > 0).sum(1).mean()), "dead_frac": float(((z > 0).sum(0) == 0).mean())}


def probe_columns(z: np.ndarray, table, cols: list[str], splits: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """{col: {"balanced_acc", "index", ..., per class}} for one SAE's latents z.

    Each (fit, test) split chooses its latents and thresholds on fit and scores them on
    test; figures are means over the splits (``balanced_acc_sd``: their spread), the
    index is the first split's, ``index_agreement`` the share of splits choosing it.
    """
    out = {}
    for col in cols:
        runs = [lat.column_top_latents(z, table[col].to_numpy(), fit, test) for fit, test in splits]
        runs = [tops for tops in runs if tops]
        if not runs:
            continue
        best = [max(tops, key=lambda t: t.balanced_acc_fit) for tops in runs]
        per_split = [float(np.mean([t.balanced_acc for t in tops])) for tops in runs]
        entry = {"balanced_acc": float(np.mean(per_split)), "balanced_acc_sd": float(np.std(per_split)),
                 "balanced_acc_fit": float(np.mean([t.balanced_acc_fit for tops in runs for t in tops])),
                 "auc": float(np.mean([t.auc for tops in runs for t in tops])),
                 "index": best[0].index, "sign": best[0].sign,
                 "index_agreement": float(np.mean([b.index == best[0].index for b in best]))}
        if len(runs[0]) > 1:
            for t in runs[0]:
                same = [u for tops in runs for u in tops if u.cls == t.cls]
                entry[_key(t.cls)] = {"balanced_acc": float(np.mean([u.balanced_acc for u in same])),
                                      "balanced_acc_fit": float(np.mean([u.balanced_acc_fit for u in same])),
                                      "auc": float(np.mean([u.auc for u in same])), "index": t.index, "sign": t.sign}
        out[col] = entry
    return out


def logreg_columns(x: np.ndarray, table, cols: list[str], splits: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """{col: {"balanced_acc", "balanced_acc_sd"}} of logistic regression on all of x, fit on
    each split's fit rows and scored on its test rows: the all-dimensions ceiling for one latent."""
    out = {}
    for col in cols:
        labels = table[col].astype(str).to_numpy()
        per_split = []
        for fit, test in splits:
            classes = sorted(set(labels[fit]) & set(labels[test]))
            if len(classes) < 2 or len(set(labels[fit])) < 2:
                continue
            pred = logistic_classifier(x[fit], labels[fit], seed=0).predict(x[test])
            if len(set(labels)) == 2:
                classes = classes[:1]
            per_split.append(float(np.mean([lat.balanced_accuracy(pred == c, labels[test] == c) for c in classes])))
        if per_split:
            out[col] = {"balanced_acc": float(np.mean(per_split)), "balanced_acc_sd": float(np.std(per_split))}
    return out


def verify_metrics(x: np.ndarray, x_hat: np.ndarray, speakers: np.ndarray, seed: int) -> dict:
    """EER / minDCF (fractions, as ``eval.py verify``) of original and reconstructed
    embeddings on the same all-pairs trials, with the shared verification code."""
    from jaxdis.eval.verification import verify

    out = {name: {k: v for k, v in verify(emb, speakers, seed=seed).items() if k in ("eer", "min_dcf")}
           for name, emb in (("original", x), ("reconstructed", x_hat))}
    out["eer_delta_points"] = 100.0 * (out["reconstructed"]["eer"] - out["original"]["eer"])
    return out


def run(args) -> dict:
    saes, x, table = load_inputs(args)
    os.makedirs(args.out, exist_ok=True)
    cols = args.cols or default_cols(table, args.group_col)
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise SystemExit(f"{args.labels} has no column {missing} (columns: {', '.join(table.columns)})")
    groups = table[args.group_col].to_numpy() if args.group_col in table.columns else np.arange(len(x))
    n_splits = max(1, args.splits) if args.heldout > 0 else 1
    splits = [lat.group_split(groups, args.heldout, args.seed + i) for i in range(n_splits)]
    fit = splits[0][0]

    per_sae, latents = {}, {}
    for sae in saes:
        z = sae.latents(x)  # (N, L)
        latents[sae.label] = z
        per_sae[sae.label] = {**sae_metrics(sae, x, z), "top_latent": probe_columns(z, table, cols, splits)}
        print(f"{sae.label}: fvu {per_sae[sae.label]['fvu']:.4f}, " + ", ".join(
            f"{c} {v['balanced_acc']:.3f} (#{v['index']})" for c, v in per_sae[sae.label]["top_latent"].items()))

    primary = next((s for s in saes if s.label == args.sae), saes[0]) if args.sae else saes[0]
    if args.sae and primary.label != args.sae:
        raise SystemExit(f"no SAE {args.sae!r}; have {', '.join(s.label for s in saes)}")
    metrics = dict(per_sae[primary.label])
    metrics["sae"] = per_sae
    metrics["heldout_frac"] = float(args.heldout)
    metrics["splits"] = n_splits
    # Context: the best single input dimension, chosen and scored the same way.
    metrics["baseline"] = {"top_dim": {c: {k: v for k, v in e.items() if k in ("balanced_acc", "balanced_acc_sd",
                                                                                "index")}
                                       for c, e in probe_columns(x, table, cols, splits).items()},
                           "logreg": logreg_columns(x, table, cols, splits)}
    print("baseline: " + ", ".join(f"{c} best input dim {e['balanced_acc']:.3f} (#{e['index']})"
                                   for c, e in metrics["baseline"]["top_dim"].items()) + "; " + ", ".join(
        f"{c} logistic regression {e['balanced_acc']:.3f}" for c, e in metrics["baseline"]["logreg"].items()))

    if args.save_reconstruction:
        os.makedirs(os.path.dirname(os.path.abspath(args.save_reconstruction)), exist_ok=True)
        np.save(args.save_reconstruction, primary.decode(latents[primary.label], like=x).astype(np.float32))
    if not args.no_verify and args.group_col in table.columns:
        v = verify_metrics(x, primary.decode(latents[primary.label], like=x), table[args.group_col].to_numpy(),
                           args.seed)
        metrics["verify"] = v
        print(f"verify ({args.group_col}): EER original {100 * v['original']['eer']:.2f} %, reconstructed "
              f"{100 * v['reconstructed']['eer']:.2f} % ({v['eer_delta_points']:+.2f} points)")

    _write_table(per_sae, cols, os.path.join(args.out, "table.md"))
    if not args.no_plots:
        _plots(args, saes, latents, table, cols, per_sae, fit)
    return metrics


def _write_table(per_sae: dict, cols: list[str], path: str) -> None:
    from jaxdis.eval.report import markdown_table

    rows = []
    for label, m in per_sae.items():
        row = {"sae": label, "fvu": m["fvu"], "l0": m["l0"], "dead_frac": m["dead_frac"]}
        for c in cols:
            if c in m["top_latent"]:
                row[f"{c} bal. acc"] = m["top_latent"][c]["balanced_acc"]
                row[f"{c} latent"] = m["top_latent"][c]["index"]
        rows.append(row)
    with open(path, "w") as f:
        f.write(markdown_table(rows) + "\n")


def _plots(args, saes, latents, table, cols, per_sae, fit) -> None:
    if len(saes) > 1:
        for col in cols:
            rows = [dict(n_latents=s.n_latents, k=s.k, balanced_acc=per_sae[s.label]["top_latent"][col]["balanced_acc"])
                    for s in saes if col in per_sae[s.label]["top_latent"]]
            if rows:
                lat.plot_top_latent_grid(rows, col, os.path.join(args.out, f"top_latent_{_key(col)}.png"))
    sizes = sorted({s.n_latents for s in saes})
    split_col = args.split_col or (args.group_col if args.group_col in table.columns else None)
    if len(sizes) > 1 and split_col:
        k_common = min({s.k for s in saes}, key=lambda k: -sum(s.k == k for s in saes))
        chain = [min((s for s in saes if s.n_latents == n), key=lambda s: (s.k != k_common, s.seed)) for n in sizes]
        for col in cols:
            top = per_sae[chain[0].label]["top_latent"].get(col)
            if top is None:
                continue
            rows = lat.feature_splitting(chain, latents, (chain[0].label, top["index"]), table[split_col].to_numpy())
            classes = sorted(set(table[split_col].astype(str)))
            lat.plot_feature_splitting(rows, classes, f"{col}: latents near L={sizes[0]} #{top['index']} "
                                       f"(decoder cosine), mean activation per {split_col}",
                                       os.path.join(args.out, f"feature_splitting_{_key(col)}.png"))
