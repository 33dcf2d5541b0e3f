"""`eval.py sae-steer`: edit one SAE latent and watch a classifier and class centroids move.

    python eval.py sae-steer --workdir runs/sae --labels labels.csv --col gender --out results/steer

For each target class t of ``--col`` (or ``--target``), one latent is edited in every
held-out utterance of another class that a logistic-regression classifier (trained on
the original fit embeddings) gets right. The latent, chosen on the fit speakers only: for
a binary column its top latent, the same for both directions; otherwise the best latent
whose activity indicates t. The edit (``--mode``): *match* (default) moves the latent
until the utterance's projection on its decoder direction equals the target class's mean
projection (fit rows; clipped at 0), i.e. the class difference along that one latent;
*typical* sets it to its mean active value on t (× ``--scale``; the paper's edit);
``--value`` sets a value. The edit keeps the SAE's error term (x + Δz·W_dec;
``--no-keep-error`` decodes x̂').

metrics.json: ``steer.flip_rate`` (share of those utterances now classified t; mean over
targets), ``steer.sim_shift`` (mean change of cos(x, centroid_t) − cos(x, centroid_source)),
and per target ``steer.<t>.{flip_rate, sim_shift, latent, value, value_before, n, remove_flip_rate}``
(remove: the latent set to 0 in held-out t utterances). Plots: ``steer_<t>.png``
(relative-similarity histograms before/after, flip rate against the edit's strength).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from jaxdis.eval import latents as lat
from jaxdis.eval.commands.sae_probe import _key, load_inputs
from jaxdis.eval.probes import logistic_classifier

SWEEP = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", nargs="+", required=True, help="SAE run(s) made by train.py --config configs/sae.py")
    p.add_argument("--embeddings", help="(N, d) .npy/parquet (default: the first run's data.embeddings)")
    p.add_argument("--labels", required=True, help="CSV with one row per embedding")
    p.add_argument("--col", default="gender", help="label column to steer")
    p.add_argument("--target", nargs="+", help="target classes (default: every class of --col)")
    p.add_argument("--sae", help="which SAE (its label, e.g. L2048_k32_s0; default the first)")
    p.add_argument("--latent", type=int, help="latent to edit (default: the top latent for the target)")
    p.add_argument("--mode", choices=["match", "typical"], default="match",
                   help="match: move the latent until the utterance's projection on its decoder direction is "
                   "the target class mean; typical: set it to its mean active value on the target class")
    p.add_argument("--value", type=float, help="set the latent to this value instead")
    p.add_argument("--scale", type=float, default=1.0, help="typical mode: multiple of the typical value")
    p.add_argument("--no-keep-error", action="store_true", help="use the edited reconstruction alone")
    p.add_argument("--group-col", default="speaker", help="held-out split is disjoint in this column")
    p.add_argument("--heldout", type=float, default=0.5, help="fraction of groups held out (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--out", required=True, help="output directory")


def steering_latent(z: np.ndarray, labels: np.ndarray, target: str, fit: np.ndarray, test: np.ndarray,
                    args) -> int:
    """The latent to edit toward `target`, chosen on the fit rows only.

    Binary column: the column's top latent (either sign), the same one for both targets
    (raised toward the class it indicates, lowered toward the other). Otherwise the best
    latent whose activity indicates `target`.
    """
    if args.latent is not None:
        return int(args.latent)
    classes = sorted(set(labels))
    if len(classes) == 2:
        return lat.top_latent(z, labels, classes[0], fit, test)[0].index
    return lat.top_latent(z, labels, target, fit, test, positive_only=True)[0].index


def steer_values(sae, x: np.ndarray, z: np.ndarray, j: int, goal: float, typical: float, args,
                 strength: float = 1.0) -> np.ndarray:
    """New values (N,) of latent j for rows x (N, d) with latents z (N, L).

    x is in the SAE's unstandardised input space (``sae.normalize_rows``: the raw rows, or
    unit-norm rows for an L2 SAE). match: each row's value is moved until its projection on
    latent j's decoder direction in that space equals `goal` (the target class's mean
    projection, same space), clipped at 0: the
    class difference along this one latent. typical: `typical` × --scale (the paper's
    edit). --value: that value. `strength` scales the edit (the sweep).
    """
    zj = z[:, j]
    if args.value is not None:
        return zj + strength * (float(args.value) - zj)
    if args.mode == "typical":
        return zj + strength * (typical * args.scale - zj)
    w = sae.raw_direction(j)  # (d,) change per unit of latent j (unstandardised input space)
    norm = max(float(np.linalg.norm(w)), 1e-12)
    delta = (goal - np.asarray(x, np.float64) @ (w / norm)) / norm  # (N,)
    return np.maximum(zj + strength * delta, 0.0).astype(np.float32)


def steer_class(sae, x: np.ndarray, z: np.ndarray, labels: np.ndarray, target: str, fit: np.ndarray,
                test: np.ndarray, clf, args) -> tuple[dict, dict]:
    """Steering results toward one target class: (metrics, plot data)."""
    y = labels == target
    j = steering_latent(z, labels, target, fit, test, args)
    on = z[fit & y, j]
    typical = float(on[on > 0].mean()) if (on > 0).any() else 0.0
    w = sae.raw_direction(j)
    xin = sae.normalize_rows(x)  # the space w lives in (x itself unless the SAE L2-normalises)
    goal = float(np.mean(xin[fit & y] @ (w / max(float(np.linalg.norm(w)), 1e-12))))
    keep = not args.no_keep_error

    pred0 = clf.predict(x)
    source = test & ~y & (pred0 == labels)  # held-out utterances of other classes, classified right
    if not source.any():
        return {}, {}
    xs, zs, xins = x[source], z[source], xin[source]
    centroid_t = x[fit & y].mean(0)
    centroid_s = x[fit & ~y].mean(0)  # the other classes' fit rows (one class if binary)

    def edited(strength: float) -> tuple[np.ndarray, np.ndarray]:
        values = steer_values(sae, xins, zs, j, goal, typical, args, strength)
        return lat.steer(sae, xs, j, value=values, keep_error=keep), values

    after, values = edited(1.0)
    flip = float(np.mean(clf.predict(after) == target))
    rel0 = lat.relative_similarity(xs, centroid_t, centroid_s)
    rel1 = lat.relative_similarity(after, centroid_t, centroid_s)
    sweep = [(s, float(np.mean(clf.predict(edited(s)[0]) == target))) for s in SWEEP]

    targets = test & y & (pred0 == target)
    remove = float("nan")
    if targets.any():
        removed = lat.steer(sae, x[targets], j, value=0.0, keep_error=keep)
        remove = float(np.mean(clf.predict(removed) != target))
    metrics = {"flip_rate": flip, "sim_shift": float(np.mean(rel1 - rel0)), "latent": j,
               "value": float(values.mean()), "value_before": float(zs[:, j].mean()), "typical_value": typical,
               "n": int(source.sum()), "remove_flip_rate": remove,
               "rel_sim_before": float(rel0.mean()), "rel_sim_after": float(rel1.mean())}
    return metrics, {"before": rel0, "after": rel1, "sweep": sweep}


def run(args) -> dict:
    saes, x, table = load_inputs(args)
    sae = next((s for s in saes if s.label == args.sae), None) if args.sae else saes[0]
    if sae is None:
        raise SystemExit(f"no SAE {args.sae!r}; have {', '.join(s.label for s in saes)}")
    if args.col not in table.columns:
        raise SystemExit(f"{args.labels} has no column {args.col!r} (columns: {', '.join(table.columns)})")
    os.makedirs(args.out, exist_ok=True)
    labels = table[args.col].astype(str).to_numpy()
    groups = table[args.group_col].to_numpy() if args.group_col in table.columns else np.arange(len(x))
    fit, test = lat.group_split(groups, args.heldout, args.seed)
    clf = logistic_classifier(x[fit], labels[fit], seed=args.seed)
    acc = float(np.mean(clf.predict(x[test]) == labels[test]))
    z = sae.latents(x)

    per, results = {}, {}
    for target in args.target or sorted(set(labels)):
        m, plot = steer_class(sae, x, z, labels, target, fit, test, clf, args)
        if not m:
            continue
        per[_key(target)] = m
        print(f"→ {target}: latent #{m['latent']} {m['value_before']:.3f} → {m['value']:.3f}: flip {m['flip_rate']:.3f} of {m['n']}, "
              f"similarity shift {m['sim_shift']:+.3f}, removal flips {m['remove_flip_rate']:.3f}")
        if not args.no_plots:
            lat.plot_steering(plot["before"], plot["after"], plot["sweep"],
                              f"{sae.label}: latent #{m['latent']} → {target} (flip {m['flip_rate']:.0%})",
                              os.path.join(args.out, f"steer_{_key(target)}.png"))
    if not per:
        raise SystemExit("nothing to steer: no held-out utterance of another class is classified correctly")
    results = {"flip_rate": float(np.mean([m["flip_rate"] for m in per.values()])),
               "sim_shift": float(np.mean([m["sim_shift"] for m in per.values()])),
               "classifier_acc": acc, **per}
    return {"steer": results}
