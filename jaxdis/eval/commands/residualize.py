"""`eval.py residualize`: remove what text embeddings linearly explain from audio embeddings.

    python eval.py residualize --audio runs/embeddings/audio_ge2e.npy --text runs/embeddings/text_minilm.npy \\
        --labels runs/embeddings/labels.csv --group speaker --content sentence \\
        --probe sentence --probe speaker --cv --out results/residualize

Four versions of the audio embeddings, side by side (metrics.json prefixes):
  orig.*       the audio embeddings as given
  center.*     minus their global mean (centring alone)
  groupmean.*  minus the mean of their --content group (e.g. each sentence's mean over voices)
  resid.*      minus the ridge prediction from the text embedding (Y - Ŷ), fit on all rows
Each gets cosine statistics by --group (same_mean, diff_mean, gap, std, quantiles from 2000-bin
histograms) and a held-out logistic probe per --probe column (`<prefix>.probe.<col>`, chance
in `chance.<col>`).

Out-of-sample (`oos.<prefix>.*`, unless --fit-frac is 0 or 1): the distinct values of --fit-by
(default: --content) are split; ridge (and the centring mean) are fit on the --fit-frac part and
applied to the remaining rows, which is all the oos statistics and probes look at.
`oos.groupmean.*` is transductive: unseen sentences have no fitted mean, so it subtracts
each held-out sentence's mean over the held-out rows themselves (it needs other speakers'
recordings of that new sentence; ridge needs only its text).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from jaxdis.eval.report import markdown_table

DEFAULT_ALPHAS = tuple(np.logspace(-3, 4, 15))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--audio", required=True, help="(N, d_a) audio embeddings, .npy or .parquet")
    p.add_argument("--text", required=True, help="(N, d_t) text embeddings, one row per audio row")
    p.add_argument("--labels", required=True, help="CSV with one row per embedding")
    p.add_argument("--group", default="speaker", help="label column for same/different-group cosine statistics")
    p.add_argument("--content", default="sentence", help="label column for the per-group mean baseline")
    p.add_argument("--probe", action="append", default=None, help="label column to probe (repeatable)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--alpha", type=float, default=1.0, help="ridge strength (default 1.0, the blog's)")
    how.add_argument("--cv", action="store_true", help="choose alpha by efficient leave-one-out over --alphas")
    p.add_argument("--alphas", type=float, nargs="+", default=list(DEFAULT_ALPHAS), help="grid for --cv")
    p.add_argument("--fit-frac", type=float, default=0.5, help="share of --fit-by values to fit on, out of sample")
    p.add_argument("--fit-by", default=None, help="column whose values are split for out-of-sample (default --content)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--out", required=True, help="output directory")


def load_inputs(args):
    """(audio (N, d_a), text (N, d_t), labels) with clear errors for mismatched rows or columns."""
    from jaxdis.embeddings import EmbeddingError, load_embeddings, load_labels

    audio, text = load_embeddings(args.audio), load_embeddings(args.text)
    if len(audio) != len(text):
        raise EmbeddingError(f"{args.audio} has {len(audio)} rows but {args.text} has {len(text)}: "
                             "one text embedding per audio embedding, same order")
    cols = [args.group, args.content, *(args.probe or []), *([args.fit_by] if args.fit_by else [])]
    labels = load_labels(args.labels, len(audio), list(dict.fromkeys(cols)))
    return audio, text, labels


def ridge_residuals(X_fit, Y_fit, X, Y, args) -> tuple[np.ndarray, float]:
    """(Y - Ŷ on the given rows, alpha) for a ridge fit on (X_fit, Y_fit)."""
    from jaxdis import ridge

    if args.cv:
        model = ridge.fit_cv(X_fit, Y_fit, args.alphas)
    else:
        model = ridge.fit(X_fit, Y_fit, args.alpha)
    return np.asarray(model.residualize(X, Y), np.float32), float(np.asarray(model.alpha))


def group_mean_removed(Y, groups) -> np.ndarray:
    """Y minus the mean of its group's rows."""
    _, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    sums = np.zeros((codes.max() + 1, Y.shape[1]))
    np.add.at(sums, codes, Y)
    return (Y - (sums / np.bincount(codes)[:, None])[codes]).astype(np.float32)


def describe(Y, labels, args, out_dir: str | None, tag: str) -> dict:
    """Cosine statistics by --group and probes of each --probe column for one version of Y."""
    from jaxdis.eval.cosine import cosine_stats
    from jaxdis.eval.probes import probe_accuracy

    st = cosine_stats(Y, labels[args.group].to_numpy())
    metrics = st.summary()
    for col in args.probe or []:
        metrics[f"probe.{col}"] = probe_accuracy(Y, labels[col].to_numpy(), seed=args.seed)
    return {"metrics": metrics, "stats": st}


def split_rows(labels, by: str, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, held-out rows): whole values of `by` on each side."""
    values = np.unique(labels[by].to_numpy())
    rng = np.random.default_rng(seed)
    chosen = set(rng.permutation(values)[: max(1, int(round(frac * len(values))))])
    mask = labels[by].isin(chosen).to_numpy()
    if mask.all() or not mask.any():
        raise SystemExit(f"--fit-frac {frac} leaves nothing on one side of {len(values)} {by!r} values")
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def versions(X_fit, Y_fit, X, Y, groups, args) -> tuple[dict[str, np.ndarray], float]:
    """The four versions of Y (rows of X, Y), baselines and ridge fit on (X_fit, Y_fit)."""
    resid, alpha = ridge_residuals(X_fit, Y_fit, X, Y, args)
    return {"orig": Y, "center": (Y - Y_fit.mean(0)).astype(np.float32),
            "groupmean": group_mean_removed(Y, groups), "resid": resid}, alpha


def run(args) -> dict:
    audio, text, labels = load_inputs(args)
    os.makedirs(args.out, exist_ok=True)
    content = labels[args.content].to_numpy()
    metrics: dict[str, float] = {"n": len(audio), "audio_dim": audio.shape[1], "text_dim": text.shape[1]}
    for col in args.probe or []:
        metrics[f"chance.{col}"] = 1.0 / labels[col].nunique()

    ins, alpha = versions(text, audio, text, audio, content, args)
    metrics["alpha"] = alpha
    np.save(os.path.join(args.out, "resid.npy"), ins["resid"])
    described = {name: describe(Y, labels, args, args.out, name) for name, Y in ins.items()}
    for name, d in described.items():
        metrics.update({f"{name}.{k}": v for k, v in d["metrics"].items()})

    oos = None
    if 0 < args.fit_frac < 1:
        fit_rows, test_rows = split_rows(labels, args.fit_by or args.content, args.fit_frac, args.seed)
        held = labels.iloc[test_rows].reset_index(drop=True)
        oos_versions, oos_alpha = versions(text[fit_rows], audio[fit_rows], text[test_rows], audio[test_rows],
                                           content[test_rows], args)
        metrics["oos.alpha"] = oos_alpha
        metrics["oos.fit_rows"], metrics["oos.test_rows"] = len(fit_rows), len(test_rows)
        np.save(os.path.join(args.out, "oos_resid.npy"), oos_versions["resid"])
        np.save(os.path.join(args.out, "oos_rows.npy"), test_rows)
        oos = {name: describe(Y, held, args, args.out, f"oos_{name}") for name, Y in oos_versions.items()}
        for name, d in oos.items():
            metrics.update({f"oos.{name}.{k}": v for k, v in d["metrics"].items()})

    table = report_table(metrics, args, oos is not None)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    if not args.no_plots:
        plots(described, oos, audio, ins["resid"], labels, args)
    return metrics


def report_table(metrics: dict, args, with_oos: bool) -> str:
    """One row per version (and per out-of-sample version): gap, means, probes."""
    probes = [f"probe.{c}" for c in args.probe or []]
    cols = ["same_mean", "diff_mean", "gap", "d_prime", *probes]
    rows = []
    for scope in ("", "oos.") if with_oos else ("",):
        for name in ("orig", "center", "groupmean", "resid"):
            row = {"rows": "held-out" if scope else "in-sample", "version": name}
            row.update({c: metrics[f"{scope}{name}.{c}"] for c in cols})
            rows.append(row)
    head = (f"alpha {metrics['alpha']:g}" + (f" (oos fit: {metrics['oos.alpha']:g})" if with_oos else "")
            + f"; groups by {args.group!r}, content {args.content!r}; chance: "
            + ", ".join(f"{c} {metrics[f'chance.{c}']:.3f}" for c in args.probe or []))
    return head + "\n\n" + markdown_table(rows, ["rows", "version", *cols])


def plots(described, oos, audio, resid, labels, args) -> None:
    """Histograms (same vs different group, each version), per-group histograms, group heatmaps."""
    from jaxdis.eval.cosine import group_mean_matrix, plot_group_histograms, plot_group_matrix, plot_histograms

    out = args.out
    plot_histograms({k: v["stats"] for k, v in described.items()}, os.path.join(out, "hist_in_sample.png"),
                    f"cosine similarity by {args.group}, in-sample")
    if oos:
        plot_histograms({k: v["stats"] for k, v in oos.items()}, os.path.join(out, "hist_out_of_sample.png"),
                        f"cosine similarity by {args.group}, held-out {args.fit_by or args.content} values")
    for name in ("orig", "resid"):
        plot_group_histograms(described[name]["stats"], os.path.join(out, f"group_hist_{name}.png"),
                              f"same-{args.group} similarities ({name})")
    groups = labels[args.group].to_numpy()
    for name, Y in (("orig", audio), ("resid", resid)):
        names, M = group_mean_matrix(Y, groups)
        plot_group_matrix(names, M, os.path.join(out, f"group_matrix_{name}.png"),
                          f"mean cosine by {args.group} ({name})")
