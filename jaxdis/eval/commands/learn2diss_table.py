"""`eval.py learn2diss-table`: what each Learn2Diss encoder knows about speaker and content
(the shape of the paper's Table 5), for an MI-off and an MI-on run side by side.

    python eval.py learn2diss-table --workdirs runs/l2d_mi_off runs/l2d_mi_on --out results/l2d
    python eval.py learn2diss-table --workdirs A B --manifest corpus.csv --out DIR

Utterances: the speakers the runs held out from training (``--manifest``: that corpus,
less any speaker a run trained on). Per run and encoder, on mean-pooled (frame encoder)
or pooled (utterance encoder) representations, standardised logistic regressions:

- ``sid``: speaker-ID accuracy (SUPERB style), utterances split at random, stratified by
  speaker (every speaker is seen in training);
- ``content``: accuracy predicting the sentence (``--content-col``), split by speaker so
  the test voices are unseen by the probe too.

metrics.json: ``<run>.frame.sid``, ``<run>.utt.sid``, ``<run>.frame.content``,
``<run>.utt.content`` (frame = Σ_l y^l, utt = z^L), the same for ``frame_last`` (y^M)
and ``utt_frames`` (z̄), ``input.*`` for the log-mel's mean and std (no model), and
``chance.sid`` / ``chance.content``, and ``<run>.train.<term>``: the mean of the last
quarter of the logged training values of the CLUB estimate, q's log-likelihood and each
loss term. table.md holds the same numbers.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from jaxdis.eval.report import markdown_table

ENCODERS = ("frame", "utt", "frame_last", "utt_frames")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdirs", nargs="+", required=True, help="Learn2Diss workdirs, e.g. the MI-off then the MI-on run")
    p.add_argument("--names", nargs="+", help="run names in metrics.json (default: the workdirs' base names)")
    p.add_argument("--manifest", help="corpus to probe (default: the runs' held-out split)")
    p.add_argument("--content-col", default="sentence", help="corpus column the content probe predicts")
    p.add_argument("--speakers", type=int, default=0, help="probe only this many held-out speakers (0: all)")
    p.add_argument("--test-frac", type=float, default=0.25, help="fraction of utterances (sid) or speakers (content) tested")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory")


def _names(args) -> list[str]:
    names = args.names or [os.path.basename(os.path.normpath(w)) for w in args.workdirs]
    if len(names) != len(args.workdirs) or len(set(names)) != len(names):
        raise SystemExit("--names must give one distinct name per workdir")
    return names


def probe_corpus(configs: list, manifest: str | None, speakers: int, seed: int):
    """The corpus to probe: held-out speakers of every run (of `manifest` when given)."""
    from jaxdis.data.corpus import load_corpus
    from jaxdis.methods.common import corpus_splits

    trained = set()
    for config in configs:
        trained |= set(corpus_splits(config)[0].table["speaker"].astype(str))
    corpus = load_corpus(manifest) if manifest else corpus_splits(configs[0])[1]
    spk = corpus.table["speaker"].astype(str).to_numpy()
    keep = ~np.isin(spk, sorted(trained))
    names = np.array(sorted(set(spk[keep])))
    if speakers and 0 < speakers < len(names):
        names = np.random.default_rng(seed).choice(names, speakers, replace=False)
    keep &= np.isin(spk, names)
    if len(names) < 2:
        raise SystemExit(f"need at least 2 speakers no run trained on; found {len(names)}")
    return corpus.subset(np.flatnonzero(keep))


def probe_metrics(x: np.ndarray, speakers: np.ndarray, content: np.ndarray | None, test_frac: float,
                  seed: int) -> dict[str, float]:
    """{"sid": speaker-ID accuracy, "content": sentence accuracy on unseen voices}."""
    from jaxdis.eval.probes import probe_accuracy

    out = {"sid": probe_accuracy(x, speakers, test_frac=test_frac, seed=seed)}
    if content is not None:
        out["content"] = probe_accuracy(x, content, test_frac=test_frac, seed=seed, groups=speakers)
    return out


TRAIN_TERMS = ("club", "q_loglik", "L_frame", "L_utt", "L_MI", "frame_acc", "nce_acc")


def train_summary(workdir: str) -> dict[str, float]:
    """Mean of each logged term over the last quarter of a run's logged steps."""
    from jaxdis.train.logging import read_jsonl

    rows = [r for r in read_jsonl(workdir) if "train/loss" in r]
    tail = rows[len(rows) - max(1, len(rows) // 4):]
    return {k: float(np.mean([r[f"train/{k}"] for r in tail if r.get(f"train/{k}") is not None]))
            for k in TRAIN_TERMS if tail and any(r.get(f"train/{k}") is not None for r in tail)}


def run(args) -> dict:
    from jaxdis.train import restore
    from jaxdis.train.checkpoint import load_config

    names = _names(args)
    configs = [load_config(w) for w in args.workdirs]
    bad = [w for w, c in zip(args.workdirs, configs) if c.method != "learn2diss"]
    if bad:
        raise SystemExit(f"not learn2diss runs: {', '.join(bad)}")
    corpus = probe_corpus(configs, args.manifest, args.speakers, args.seed)
    col = args.content_col if args.content_col in corpus.table.columns else None
    metrics: dict[str, float] = {}
    rows = []
    baseline_done = False
    for name, workdir in zip(names, args.workdirs):
        config, method, params, state = restore(workdir)
        summary = train_summary(workdir)
        metrics.update({f"{name}.train.{k}": v for k, v in summary.items()})
        metrics[f"{name}.mi_weight"] = float(config.mi_weight)
        kept, emb = method.embed(params, state, corpus)
        spk = kept.table["speaker"].astype(str).to_numpy()
        content = kept.table[col].astype(str).to_numpy() if col else None
        if not baseline_done:
            _, feats = method.frame_method._features(corpus)
            emb = {"input": np.stack([np.concatenate([f.mean(0), f.std(0)]) for f in feats]), **emb}
            metrics["chance.sid"] = 1.0 / len(set(spk))
            if content is not None:
                metrics["chance.content"] = 1.0 / len(set(content))
        for enc, x in emb.items():
            res = probe_metrics(x, spk, content, args.test_frac, args.seed)
            run_name = "input" if enc == "input" else f"{name}.{enc}"
            metrics.update({f"{run_name}.{k}": v for k, v in res.items()})
            if enc in ("frame", "utt") or enc == "input":
                rows.append({"run": "—" if enc == "input" else name,
                             "λ": "—" if enc == "input" else f"{config.mi_weight:g}", "encoder": enc,
                             "speaker ID acc": res["sid"], "content acc": res.get("content", float("nan")),
                             "train CLUB (nats/frame)": "" if enc == "input" else f"{summary.get('club', float('nan')):.2f}"})
            print(f"{run_name}: " + ", ".join(f"{k} {v:.3f}" for k, v in res.items()), flush=True)
        baseline_done = True
    md = (f"{corpus.table['speaker'].nunique()} held-out speakers, {len(corpus)} utterances; chance: speaker "
          f"{metrics['chance.sid']:.3f}, content {metrics.get('chance.content', float('nan')):.3f}\n\n"
          + markdown_table(rows))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(md + "\n")
    print(md)
    return metrics
