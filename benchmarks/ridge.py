"""Closed-form ridge, jaxdis vs scikit-learn, printed as time ratios (sklearn / jaxdis).

The work: a 1536 → 768 multi-output ridge with an intercept (sklearn ``Ridge(alpha=1)``,
Cholesky of XᵀX), float32 NumPy inputs on both sides, at n = 468, 20 000 and 100 000, and
10-alpha leave-one-out CV (``RidgeCV(alphas)``, its GCV mode, vs ``ridge.fit_cv``). Each
case is warmed up once (jit compilation excluded), then the sides are timed in
alternation, ``--repeats`` times each, and the medians compared; jaxdis's time includes the
host → device transfer and waits for the result. The coefficients of both are compared. On
CPU the default sums the Gram with the host BLAS (``gram="auto"``); the pure-XLA Gram
(``gram="xla"``, what accelerators run) is timed beside it.
Goals (issue 4): ≥ 1.0× at every n on CPU, ≥ 3× for the CV.

    python benchmarks/ridge.py                         # the full table (~2 min on 2 free cores)
    python benchmarks/ridge.py --quick                 # n = 468, 4000; CV at 468; 2 repeats
    python benchmarks/ridge.py --sizes 20000 --cv-sizes "" --phases   # where the time goes

On a shared machine run it under the heavy-job lock:
    flock /tmp/jaxdis-heavy.lock nice -n 5 .venv/bin/python benchmarks/ridge.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.linear_model import Ridge, RidgeCV  # noqa: E402

from jaxdis import ridge  # noqa: E402


def make_data(n: int, d: int, k: int, seed: int = 0):
    """Off-centre X (the intercept matters) and a Y that depends linearly on X, plus noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d), dtype=np.float32)
    X += 0.5
    Y = rng.standard_normal((n, k), dtype=np.float32)
    Y += 0.5 * X[:, :k] - 0.25 * X[:, d - k:] + 1.0
    return X, Y


SETTLE_S = 0.2  # untimed pause before each timed call (see alternate)


def alternate(fns: dict, repeats: int, settle: float = SETTLE_S) -> dict:
    """Warm each callable once, then time them in turn `repeats` times; seconds per call.

    Each timed call starts after an untimed `settle` pause: OpenBLAS's worker threads keep
    spinning for a while after a call, and on 2 cores they slowed whichever side ran next
    (jaxdis's 10-alpha GCV: 106 ms right after sklearn's, 84 ms after a 0.2 s pause, 80 ms alone)."""
    for f in fns.values():
        f()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, f in fns.items():
            time.sleep(settle)
            t = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t)
    return times


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def bench_fit(n: int, d: int, k: int, repeats: int, alpha: float, settle: float = SETTLE_S) -> dict:
    X, Y = make_data(n, d, k)
    out = {}

    def sk():
        out["sk"] = Ridge(alpha=alpha).fit(X, Y)

    def jx():
        out["jx"] = jax.block_until_ready(ridge.fit(X, Y, alpha))

    def jx_xla():
        out["jx_xla"] = jax.block_until_ready(ridge.fit(X, Y, alpha, gram="xla"))

    fns = {"sklearn": sk, "jaxdis": jx}
    if n >= d and jax.default_backend() == "cpu":    # the default sums the Gram with the host BLAS there
        fns["jaxdis_xla"] = jx_xla
    t = alternate(fns, repeats, settle)
    xla = {}
    if "jaxdis_xla" in t:
        xla = {"jaxdis_xla_s": statistics.median(t["jaxdis_xla"]),
               "xla_coef_rel_diff": rel(out["jx_xla"].coef, out["sk"].coef_.T)}
    return {"case": "fit", "n": n, "sklearn_s": statistics.median(t["sklearn"]), **xla,
            "jaxdis_s": statistics.median(t["jaxdis"]), "times": t, "goal": 1.0,
            "coef_rel_diff": rel(out["jx"].coef, out["sk"].coef_.T),
            "intercept_rel_diff": rel(out["jx"].intercept, out["sk"].intercept_), "solver":
            "dual" if n < d else "primal"}


def bench_cv(n: int, d: int, k: int, repeats: int, n_alphas: int, settle: float = SETTLE_S) -> dict:
    X, Y = make_data(n, d, k, seed=1)
    alphas = np.logspace(-2, 3, n_alphas)
    out = {}

    def sk():
        out["sk"] = RidgeCV(alphas=alphas).fit(X, Y)

    def jx():
        out["jx"] = jax.block_until_ready(ridge.fit_cv(X, Y, alphas))

    t = alternate({"sklearn": sk, "jaxdis": jx}, repeats, settle)
    return {"case": f"cv{n_alphas}", "n": n, "sklearn_s": statistics.median(t["sklearn"]),
            "jaxdis_s": statistics.median(t["jaxdis"]), "times": t, "goal": 3.0,
            "coef_rel_diff": rel(out["jx"].coef, out["sk"].coef_.T),
            "intercept_rel_diff": rel(out["jx"].intercept, out["sk"].intercept_),
            "alpha": [float(out["jx"].alpha), float(out["sk"].alpha_)]}


def phases(n: int, d: int, k: int, repeats: int, settle: float = SETTLE_S) -> dict:
    """Where a primal fit's time goes: transfer, moments (Gram and XᵀY, by the host BLAS or by
    XLA), solve, in-sample residuals; beside NumPy's bare products (XᵀX is a syrk, as in sklearn)."""
    X, Y = make_data(n, d, k)
    Xd, Yd = ridge.to_device(X), ridge.to_device(Y)
    m = ridge.moments(Xd, Yd)
    model = ridge.fit_moments(m, 1.0)
    fns = {
        "to_device X, Y": lambda: jax.block_until_ready((ridge.to_device(X), ridge.to_device(Y))),
        "moments, host BLAS (default on CPU)": lambda: jax.block_until_ready(ridge.moments(X, Y, gram="host")),
        "moments, XLA": lambda: jax.block_until_ready(ridge.moments(Xd, Yd, gram="xla")),
        "solve (Cholesky)": lambda: jax.block_until_ready(ridge.fit_moments(m, 1.0)),
        "residualize": lambda: jax.block_until_ready(model.residualize(Xd, Yd)),
        "numpy XᵀX (syrk)": lambda: X.T @ X,
        "numpy XᵀY": lambda: X.T @ Y,
    }
    t = alternate(fns, repeats, settle)
    return {name: statistics.median(v) for name, v in t.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="468,20000,100000", help="n for the single-alpha fit")
    p.add_argument("--cv-sizes", default="468", help="n for the CV comparison ('' for none)")
    p.add_argument("--d", type=int, default=1536)
    p.add_argument("--k", type=int, default=768)
    p.add_argument("--alphas", type=int, default=10, help="number of CV alphas, logspace(-2, 3)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="n = 468, 4000; CV at 468; 2 repeats")
    p.add_argument("--phases", action="store_true", help="also time the phases of a primal fit at the largest n")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--settle", type=float, default=SETTLE_S,
                   help="untimed pause (s) before each timed call, so neither side runs while the other's "
                        "BLAS threads still spin; 0 to time back to back")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="limit the host BLAS (both sides) to this many threads: a per-core comparison that a "
                        "machine oversubscribed by other jobs does not distort")
    args = p.parse_args(argv)
    if args.blas_threads:
        from threadpoolctl import threadpool_limits
        with threadpool_limits(args.blas_threads, user_api="blas"):
            return run(args)
    return run(args)


def run(args) -> None:
    if args.quick:
        args.sizes, args.cv_sizes, args.repeats = "468,4000", "468", 2
    sizes = [int(s) for s in args.sizes.split(",") if s]
    cv_sizes = [int(s) for s in args.cv_sizes.split(",") if s]

    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()}), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; float32, {args.d} → {args.k}, "
          f"median of {args.repeats}, warm-up excluded, {args.settle:g} s untimed pause before each call"
          + (f"; host BLAS limited to {args.blas_threads} thread(s)" if args.blas_threads else ""), flush=True)
    rows = []
    for n in sizes:
        rows.append(bench_fit(n, args.d, args.k, args.repeats, 1.0, args.settle))
        r = rows[-1]
        print(f"  fit n={n}: sklearn {r['sklearn_s']:.3f} s, jaxdis {r['jaxdis_s']:.3f} s", flush=True)
    for n in cv_sizes:
        rows.append(bench_cv(n, args.d, args.k, args.repeats, args.alphas, args.settle))
        r = rows[-1]
        print(f"  cv n={n}: sklearn {r['sklearn_s']:.3f} s, jaxdis {r['jaxdis_s']:.3f} s", flush=True)

    print(f"\n| {args.d} → {args.k} | n | sklearn (s) | jaxdis (s) | sklearn / jaxdis | goal | met | coef rel. diff "
          f"| gram=\"xla\" (s) | sklearn / xla |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        r["ratio"] = r["sklearn_s"] / r["jaxdis_s"]
        r["met"] = r["ratio"] >= r["goal"]
        what = (f"`Ridge(alpha=1)` vs `ridge.fit` ({r['solver']})" if r["case"] == "fit"
                else f"`RidgeCV` GCV vs `ridge.fit_cv`, {args.alphas} alphas")
        print(f"| {what} | {r['n']} | {r['sklearn_s']:.3f} | {r['jaxdis_s']:.3f} | **{r['ratio']:.2f}×** | "
              f"≥ {r['goal']:.0f}× | {'yes' if r['met'] else 'no'} | {r['coef_rel_diff']:.1e} | "
              + (f"{r['jaxdis_xla_s']:.3f} | {r['sklearn_s'] / r['jaxdis_xla_s']:.2f}× |" if "jaxdis_xla_s" in r
                 else "– | – |"))
    cv_alpha = [r["alpha"] for r in rows if "alpha" in r]
    if cv_alpha:
        print(f"CV alphas chosen (jaxdis, sklearn): {cv_alpha}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")

    result = {"rows": rows}
    if args.phases and sizes:
        n = max(sizes)
        result["phases"] = ph = phases(n, args.d, args.k, args.repeats, args.settle)
        print(f"\nphases at n={n} (median s): " + ", ".join(f"{k} {v:.3f}" for k, v in ph.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
