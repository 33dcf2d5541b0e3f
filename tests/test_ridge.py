"""Ridge: sklearn Ridge / RidgeCV parity (primal, dual, intercept, GCV, k-fold), row/column
blocks == direct, 4-device shard sum == one device, float64 on request, clear errors."""

import jax
import numpy as np
import pytest
from sklearn.linear_model import Ridge, RidgeCV

from conftest import run_python, worker_result
from jaxdis import ridge


def rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def data(n, d, k, seed=0):
    """Off-centre X (so the intercept matters) and a noisy linear Y."""
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, d)) + 3).astype(np.float32)
    Y = (X @ rng.normal(size=(d, k)) + rng.normal(size=(n, k)) + 1).astype(np.float32)
    return X, Y


@pytest.mark.parametrize("n,d,gram", [(120, 24, "host"), (120, 24, "xla"), (30, 80, "auto"), (30, 80, "xla")],
                         ids=["primal-host", "primal-xla", "dual", "dual-xla"])
@pytest.mark.parametrize("alpha", [0.01, 1.0, 100.0])
def test_ridge_matches_sklearn(n, d, gram, alpha):
    X, Y = data(n, d, 5)
    ref = Ridge(alpha=alpha).fit(X.astype(np.float64), Y.astype(np.float64))
    m = ridge.fit(X, Y, alpha, gram=gram)
    assert m.coef.dtype == np.float32
    assert rel(m.coef, ref.coef_.T) < 1e-4 and rel(m.intercept, ref.intercept_) < 1e-4
    assert rel(m.predict(X), ref.predict(X)) < 1e-4


def test_no_intercept_and_1d_target():
    X, Y = data(60, 10, 1)
    ref = Ridge(alpha=2.0, fit_intercept=False).fit(X, Y[:, 0])
    m = ridge.fit(X, Y[:, 0], 2.0, fit_intercept=False)
    assert rel(m.coef[:, 0], ref.coef_) < 1e-4 and np.all(m.intercept == 0)
    assert m.predict(X).shape == (60,)


def test_float64_on_request_does_not_leak():
    import jax.numpy as jnp

    X, Y = data(50, 8, 2)
    ref = Ridge(alpha=0.3).fit(X.astype(np.float64), Y.astype(np.float64))
    m = ridge.fit(X, Y, 0.3, dtype="float64")
    assert m.coef.dtype == np.float64 and rel(m.coef, ref.coef_.T) < 1e-10
    assert jnp.asarray(1.0).dtype == jnp.float32          # x64 switched back off


@pytest.mark.parametrize("n,d", [(150, 20), (36, 60)], ids=["primal", "dual"])
def test_gcv_matches_ridgecv(n, d):
    X, Y = data(n, d, 4, seed=1)
    alphas = np.logspace(-2, 3, 9)
    ref = RidgeCV(alphas=alphas).fit(X, Y)
    m = ridge.fit_cv(X, Y, alphas)
    assert m.alpha == ref.alpha_
    assert abs(m.cv_scores.min() + ref.best_score_) < 1e-4 * abs(ref.best_score_)   # sklearn negates MSE
    assert rel(m.coef, ref.coef_.T) < 1e-4 and rel(m.intercept, ref.intercept_) < 1e-4


@pytest.mark.parametrize("n,d,k,per_target", [(24, 40, 30, False), (24, 40, 30, True), (90, 12, 3, True)],
                         ids=["dual-wide-y", "dual-per-target", "primal-per-target"])
def test_gcv_wide_targets_and_alpha_per_target(n, d, k, per_target):
    """k > n takes the n × n form of the dual LOO error; alpha_per_target the per-target one."""
    X, Y = data(n, d, k, seed=3)
    alphas = np.logspace(-1, 3, 7)
    ref = RidgeCV(alphas=alphas, alpha_per_target=per_target).fit(X, Y)
    m = ridge.fit_cv(X, Y, alphas, alpha_per_target=per_target)
    assert np.all(np.asarray(m.alpha) == ref.alpha_)
    assert rel(m.coef, ref.coef_.T) < 1e-4 and rel(m.intercept, ref.intercept_) < 1e-4


def test_host_layouts_and_dtypes():
    """Fortran-ordered, strided and float64 host arrays give the same fit (aligned NumPy copy)."""
    X, Y = data(64, 12, 3)
    ref = ridge.fit(X, Y, 1.0)
    for Xh, Yh in [(np.asfortranarray(X), Y), (X.astype(np.float64), Y.astype(np.float64)),
                   (np.repeat(X, 2, axis=1)[:, ::2], Y)]:
        m = ridge.fit(Xh, Yh, 1.0)
        assert rel(m.coef, ref.coef) < 1e-5 and rel(m.intercept, ref.intercept) < 1e-5


@pytest.mark.parametrize("n,d", [(101, 15), (30, 50)], ids=["primal", "dual"])
def test_kfold_matches_ridgecv(n, d):
    X, Y = data(n, d, 3, seed=2)
    alphas = np.logspace(-1, 3, 6)
    ref = RidgeCV(alphas=alphas, cv=4).fit(X, Y)
    m = ridge.fit_cv(X, Y, alphas, cv=4)
    assert m.alpha == ref.alpha_
    assert abs(m.cv_scores.max() - ref.best_score_) < 1e-4
    assert rel(m.coef, ref.coef_.T) < 1e-4


@pytest.mark.parametrize("gram", ["xla", "host"])
def test_blockwise_equals_direct(gram):
    X, Y = data(103, 17, 4)
    direct = ridge.moments(X, Y, block_rows=103, col_blocks=1, gram=gram)
    for block_rows, col_blocks in [(10, 3), (50, 5), (7, 17)]:
        blocked = ridge.moments(X, Y, block_rows=block_rows, col_blocks=col_blocks, gram=gram)
        for a, b in zip(blocked, direct):
            assert rel(a, b) < 1e-5
    Xc = X - X.mean(0)
    assert rel(direct[2], Xc.T @ Xc) < 1e-5


def _offset_rows(case, rng):
    """(X, Y) near zero, far from zero, or near zero in the first rows only (an offset the
    head estimate misses: the whole data sit far from zero)."""
    X = rng.normal(size=(40000, 16))
    if case == "far from zero":
        X += 1000.0
    elif case == "offset hidden after the first rows":
        X[ridge.SHIFT_ROWS:] = X[ridge.SHIFT_ROWS:] * 0.2 + 50.0
    Y = X[:, :3] * 2.0 + rng.normal(size=(40000, 3))
    return X.astype(np.float32), Y.astype(np.float32)


@pytest.mark.parametrize("case,shifted", [("near zero", [False]), ("far from zero", [True]),
                                          ("offset hidden after the first rows", [False, True])])
def test_host_moments_sum_raw_or_shifted(monkeypatch, case, shifted):
    """The host Gram sums data near zero as they are and shifts data far from zero (again when
    the first rows hid the offset); either way the moments equal float64's centred ones."""
    X, Y = _offset_rows(case, np.random.default_rng(5))
    calls, sums = [], ridge._host_sums
    monkeypatch.setattr(ridge, "_host_sums", lambda x, y, sx, *a: calls.append(sx is not None) or sums(x, y, sx, *a))
    m = ridge.moments(X, Y, block_rows=7000, gram="host")
    assert calls == shifted
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    Xc, Yc = X64 - X64.mean(0), Y64 - Y64.mean(0)
    assert rel(m.xx, Xc.T @ Xc) < 1e-5 and rel(m.xy, Xc.T @ Yc) < 1e-5 and rel(m.yy, (Yc * Yc).sum(0)) < 1e-5
    for mean, A in [(m.mean_x, X64), (m.mean_y, Y64)]:           # float32 resolution of the values
        assert np.abs(np.asarray(mean) - A.mean(0)).max() <= 1e-6 * np.abs(A).max()


def test_out_of_sample_residuals():
    X, Y = data(80, 10, 3)
    m = ridge.fit(X[:60], Y[:60], 1.0)
    ref = Ridge(alpha=1.0).fit(X[:60], Y[:60])
    assert rel(m.residualize(X[60:], Y[60:]), Y[60:] - ref.predict(X[60:])) < 1e-4


def test_four_device_shard_sum_equals_single():
    out = worker_result(run_python(["tests/workers/ridge_worker.py"],
                                   env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4",
                                        "JAX_PLATFORMS": "cpu"}, timeout=120))
    assert out["devices"] == 4
    assert max(out["moment_rel_diffs"]) < 1e-5 and out["coef_rel_diff"] < 1e-5


def test_bad_inputs_have_clear_errors():
    X, Y = data(20, 4, 2)
    with pytest.raises(ValueError, match="20 rows but Y has 19"):
        ridge.fit(X, Y[:19])
    with pytest.raises(ValueError, match="2-D"):
        ridge.fit(X[None], Y)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf .*row 3"):
        ridge.fit(bad, Y)
    with pytest.raises(ValueError, match="alpha"):
        ridge.fit(X, Y, -1.0)
    with pytest.raises(ValueError, match="columns"):
        ridge.fit(X, Y).predict(X[:, :3])
    Xw, Yw = data(10, 30, 2)                          # n < d: the centred kernel is singular at alpha 0
    for gram in ("host", "xla"):
        with pytest.raises(ValueError, match="singular Gram"):
            ridge.fit(Xw, Yw, 0.0, gram=gram)


def test_fits_trace_their_products_at_full_precision(monkeypatch):
    """On a GPU a float32 dot defaults to TF32 (~1e-3 relative error in a Gram): every entry
    point traces its compiled products under default_matmul_precision("highest")."""
    seen = []
    for name in ("_solve_dual", "_moments_jit", "_loo_dual"):
        inner = getattr(ridge, name)

        def spy(*args, _inner=inner, _name=name, **kw):
            seen.append((_name, jax.config.jax_default_matmul_precision))
            return _inner(*args, **kw)
        monkeypatch.setattr(ridge, name, spy)
    X, Y = data(30, 8, 2)
    Xw, Yw = data(10, 30, 2)
    ridge.fit(X, Y, gram="xla")
    ridge.fit(Xw, Yw, gram="xla")
    ridge.fit_cv(Xw, Yw, (0.1, 1.0))
    assert {n for n, _ in seen} == {"_solve_dual", "_moments_jit", "_loo_dual"}
    assert all(p == "highest" for _, p in seen), seen
    assert jax.config.jax_default_matmul_precision != "highest"          # nothing leaks to the caller
