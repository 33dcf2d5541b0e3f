"""TopK SAE pieces: geometric median, sparse ops, AuxK, dead tracking, unit-norm decoder,
vmapped SAEs equal to separate ones, and the single-latent ranking."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ml_collections import ConfigDict

from jaxdis.eval import latents as lat
from jaxdis.models import sparse_rows
from jaxdis.models.sae import (TopKSAE, aux_cap, fired_latents, geometric_median, init_sae, sae_loss,
                               stacked_sae_loss, unit_norm_decoder)


def test_geometric_median_is_the_weiszfeld_fixed_point():
    # 1-D: the geometric median is the median, however far the outlier.
    x = jnp.array([[0.0], [1.0], [2.0], [3.0], [1000.0]])
    assert abs(float(geometric_median(x, iters=200)[0]) - 2.0) < 1e-3
    # 2-D, no closed form: the sum of unit vectors towards the points vanishes at the optimum,
    # and the objective beats the mean's.
    pts = np.random.default_rng(0).standard_normal((200, 2)) ** 3
    m = np.asarray(geometric_median(jnp.asarray(pts, jnp.float32), iters=200))
    diff = pts - m
    pull = (diff / np.linalg.norm(diff, axis=1, keepdims=True)).sum(0)
    assert np.linalg.norm(pull) < 1e-2 * len(pts)
    cost = lambda c: np.linalg.norm(pts - c, axis=1).sum()
    assert cost(m) < cost(pts.mean(0)) - 1.0
    assert cost(m) <= min(cost(m + d) for d in ([1e-2, 0], [-1e-2, 0], [0, 1e-2], [0, -1e-2]))


@pytest.mark.parametrize("impl", ["scan", "batched"])
def test_sparse_gather_ops_and_their_gradients_match_dense(impl):
    gather_sum = functools.partial(sparse_rows.gather_sum, impl=impl)
    gather_dot = functools.partial(sparse_rows.gather_dot, impl=impl)
    r = jax.random.split(jax.random.PRNGKey(0), 4)
    w, v, y = jax.random.normal(r[0], (20, 6)), jax.random.normal(r[1], (9, 3)), jax.random.normal(r[2], (9, 6))
    idx = jax.random.randint(r[3], (9, 3), 0, 20)
    dense_sum = lambda w, v: jnp.einsum("bk,bkd->bd", v, w[idx])
    dense_dot = lambda w, y: jnp.einsum("bkd,bd->bk", w[idx], y)
    np.testing.assert_allclose(gather_sum(w, idx, v), dense_sum(w, v), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gather_dot(w, idx, y), dense_dot(w, y), rtol=1e-6, atol=1e-6)
    loss = lambda fn: lambda a, b: jnp.sum(jnp.tanh(fn(a, b)))
    both = jax.jit(lambda w, v, y: [jax.grad(loss(f), argnums=(0, 1))(w, b) for f, b in (
        (lambda a, b: gather_sum(a, idx, b), v), (dense_sum, v),
        (lambda a, b: gather_dot(a, idx, b), y), (dense_dot, y))])
    g_sum, r_sum, g_dot, r_dot = both(w, v, y)
    for ours, ref in ((g_sum, r_sum), (g_dot, r_dot)):
        for a, b in zip(ours, ref):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _sae(L=32, d=8, k=4, k_aux=4, B=24, seed=0):
    model = TopKSAE(d, L, k, k_aux=k_aux)
    x = jax.random.normal(jax.random.PRNGKey(seed), (B, d)) + 1.0
    return model, x, init_sae(model, jax.random.PRNGKey(seed + 1), x)


def test_init_tied_unit_decoder_and_median_bias():
    model, x, p = _sae()
    np.testing.assert_array_equal(p["W_dec"], p["W_enc"])  # W_dec = W_encᵀ (both stored (L, d))
    np.testing.assert_allclose(np.linalg.norm(p["W_dec"], axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(p["b_pre"], geometric_median(x), atol=1e-6)


def test_auxk_uses_stopped_residual_without_bias_and_only_dead_latents():
    model, x, p = _sae()
    dead_idx = jnp.array([2, 3, 11, 29])
    since = jnp.zeros((32,), jnp.int32).at[dead_idx].set(1000)
    loss = lambda q, mode="full": sae_loss(model, q, x, 4, since, 100, aux_mode=mode)

    @jax.jit
    def everything(q):
        m = model.bind({"params": q})
        vals, idx, pre = m.encode(x, 4)
        return (loss(q)[1], x - m.decode(vals, idx), pre, jax.grad(lambda q: loss(q)[1]["auxk"])(q),
                jax.grad(lambda q: loss(q, "compact")[0])(q), jax.grad(lambda q: loss(q)[0])(q))

    metrics, e, pre, g_aux, g_compact, g_full = everything(p)
    # By hand: residual of the main reconstruction; top-4 dead pre-activations; no b_pre.
    pre_dead = np.where(np.isin(np.arange(32), dead_idx), np.asarray(pre), -np.inf)
    top = np.sort(pre_dead, axis=1)[:, ::-1][:, :4]
    z = np.where(pre_dead >= top[:, -1:], np.maximum(pre_dead, 0), 0)
    e_hat = z @ np.asarray(p["W_dec"])
    expected = ((e - e_hat) ** 2).sum() / (e ** 2).sum()
    np.testing.assert_allclose(float(metrics["auxk"]), expected, rtol=1e-5)

    # Gradient of the AuxK term alone: no live decoder row moves (the residual is stopped).
    live = np.setdiff1d(np.arange(32), dead_idx)
    assert np.abs(np.asarray(g_aux["W_dec"])[live]).max() == 0.0
    assert np.abs(np.asarray(g_aux["W_dec"])[dead_idx]).max() > 0.0

    # The compact search gives the same gradients while ≤ aux_cap latents are dead.
    assert len(dead_idx) <= aux_cap(model) < 32
    for name in g_full:
        np.testing.assert_allclose(g_compact[name], g_full[name], rtol=1e-6, atol=1e-7)


def test_batched_sparse_impl_gives_the_scan_loss_and_gradients():
    """The GPU path (one gather / scatter-add of all B·K rows) against the CPU scan, AuxK on."""
    model, x, p = _sae()
    since = jnp.zeros((32,), jnp.int32).at[jnp.array([2, 3, 11, 29])].set(1000)
    grads = {}
    for impl in ("scan", "batched"):
        m = model.clone(sparse_impl=impl)
        (loss, metrics), g = jax.jit(jax.value_and_grad(lambda q: sae_loss(m, q, x, 4, since, 100)[:2],
                                                        has_aux=True))(p)
        assert float(metrics["auxk"]) > 0
        grads[impl] = (loss, g)
    np.testing.assert_allclose(grads["batched"][0], grads["scan"][0], rtol=1e-6)
    for name in p:
        np.testing.assert_allclose(grads["batched"][1][name], grads["scan"][1][name], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="sparse_impl"):
        sparse_rows.resolve("dense")


def test_matryoshka_loss_is_the_mean_fvu_of_nested_prefixes():
    plain, x, p = _sae(k_aux=0)
    model = TopKSAE(8, 32, 4, prefixes=(4, 16))
    since = jnp.zeros((32,), jnp.int32)
    loss, metrics, _ = jax.jit(lambda q: sae_loss(model, q, x, 4, since, 100))(p)
    base_loss, base_metrics, _ = jax.jit(lambda q: sae_loss(plain, q, x, 4, since, 100))(p)
    # Dense by hand: latents z (B, L) of the plain SAE, then each prefix alone.
    pre = (np.asarray(x) - np.asarray(p["b_pre"])) @ np.asarray(p["W_enc"]).T + np.asarray(p["b_enc"])
    z = np.where(pre >= np.sort(pre, axis=1)[:, -4:-3], np.maximum(pre, 0), 0)
    var = ((np.asarray(x) - np.asarray(x).mean(0)) ** 2).sum()
    fvus = [(((np.asarray(x) - (z[:, :m] @ np.asarray(p["W_dec"])[:m] + np.asarray(p["b_pre"]))) ** 2).sum() / var)
            for m in (4, 16, 32)]
    np.testing.assert_allclose(float(metrics["fvu_first4"]), fvus[0], rtol=1e-5)
    np.testing.assert_allclose(float(metrics["fvu_first16"]), fvus[1], rtol=1e-5)
    np.testing.assert_allclose(float(metrics["fvu"]), fvus[2], rtol=1e-5)
    np.testing.assert_allclose(float(base_loss), fvus[2], rtol=1e-5)  # no prefixes: the plain FVU
    np.testing.assert_allclose(float(loss), np.mean(fvus), rtol=1e-5)


def test_matryoshka_prefixes_from_config_fractions():
    from configs.sae import get_config
    from jaxdis.methods.sae import SAEMethod

    c = get_config("tiny")
    c.model.saes = ((4, 0), (64, 4, 0))
    c.model.matryoshka = (1 / 32, 0.25, 1.0)
    method = SAEMethod(c)
    assert method.module("L128").prefixes == (4, 32)  # the full dictionary is implied
    assert method.module("L64").prefixes == (2, 16)


def test_dead_latent_window_counts_samples():
    model, x, p = _sae(B=24)
    step = jax.jit(lambda since: sae_loss(model, p, x, 4, since, 100))
    vals, idx, _ = jax.jit(lambda q: model.apply({"params": q}, x, 4, method=TopKSAE.encode))(p)
    fired = np.asarray(fired_latents(vals, idx, 32))
    _, metrics, new = step(jnp.full((32,), 90, jnp.int32))
    np.testing.assert_array_equal(np.asarray(new), np.where(fired, 0, 90 + 24))
    assert float(metrics["dead_frac"]) == 0.0  # 90 samples is within the window of 100
    _, metrics, _ = step(new)
    assert float(metrics["dead_frac"]) == pytest.approx((~fired).mean())


def test_unit_norm_decoder_projects_gradient_and_renormalises():
    _, _, p = _sae()
    tx = unit_norm_decoder(optax.sgd(0.5))
    state = tx.init(p)
    # A gradient parallel to every decoder row changes nothing (it would only rescale them).
    parallel = jax.tree.map(jnp.zeros_like, p) | {"W_dec": 3.0 * p["W_dec"]}
    upd, state = tx.update(parallel, state, p)
    np.testing.assert_allclose(optax.apply_updates(p, upd)["W_dec"], p["W_dec"], atol=1e-6)
    # Any other gradient: rows stay unit-norm; other leaves get the plain SGD update.
    g = jax.tree.map(lambda a: jnp.ones_like(a) * 0.3, p)
    new = optax.apply_updates(p, tx.update(g, state, p)[0])
    np.testing.assert_allclose(np.linalg.norm(new["W_dec"], axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(new["W_enc"], p["W_enc"] - 0.15, atol=1e-6)


def test_vmapped_saes_train_exactly_like_separate_ones():
    """k = 2 and k = 4 with different seeds stacked in one step == each trained alone."""
    model = TopKSAE(8, 32, 4, k_aux=4)
    rng = np.random.default_rng(0)
    batches = [jnp.asarray(rng.standard_normal((32, 8)) + 0.5, jnp.float32) for _ in range(4)]
    inits = [init_sae(model, jax.random.PRNGKey(s), batches[0]) for s in (0, 1)]
    ks = jnp.array([2, 4])
    tx = unit_norm_decoder(optax.adam(1e-2))

    @jax.jit
    def stacked_step(p, st, since, x):
        f = lambda q: (lambda r: (r[0].sum(), r[2]))(stacked_sae_loss(model, q, x, ks, since, 40))
        g, since = jax.grad(f, has_aux=True)(p)
        u, st = tx.update(g, st, p)
        return optax.apply_updates(p, u), st, since

    @jax.jit
    def single_step(p, st, since, x, k):
        f = lambda q: (lambda r: (r[0], r[2]))(sae_loss(model, q, x, k, since, 40))
        g, since = jax.grad(f, has_aux=True)(p)
        u, st = tx.update(g, st, p)
        return optax.apply_updates(p, u), st, since

    p = jax.tree.map(lambda *a: jnp.stack(a), *inits)
    st, since = tx.init(p), jnp.zeros((2, 32), jnp.int32)
    for x in batches:
        p, st, since = stacked_step(p, st, since, x)
    for i, k in enumerate((2, 4)):
        q, sq, s1 = inits[i], tx.init(inits[i]), jnp.zeros((32,), jnp.int32)
        for x in batches:
            q, sq, s1 = single_step(q, sq, s1, x, k)
        for name in q:
            np.testing.assert_allclose(p[name][i], q[name], rtol=1e-5, atol=1e-6, err_msg=f"k={k} {name}")
        np.testing.assert_array_equal(since[i], s1)


def test_best_threshold_balanced_accuracy_matches_brute_force():
    rng = np.random.default_rng(0)
    y = rng.random(60) < 0.3
    z = np.where(rng.random((60, 5)) < 0.5, 0.0, rng.exponential(1.0, (60, 5)))  # many ties at 0
    z[:, 0] += 2.0 * y  # column 0 fires for the positives
    z[:, 1] = np.where(y, 0.0, z[:, 1] + 0.1)  # column 1 is silent for the positives
    acc, th, sign = lat.best_thresholds(z, y)
    for j in range(5):
        best = max(max(lat.balanced_accuracy(s * (z[:, j] - t) > 0, y) for s in (1, -1))
                   for t in np.concatenate([[-1.0], np.unique(z[:, j])]))
        assert acc[j] == pytest.approx(best)
        assert lat.balanced_accuracy(lat.predict(z[:, j], th[j], sign[j]), y) == pytest.approx(acc[j])
    assert sign[0] == 1 and sign[1] == -1
    from sklearn.metrics import roc_auc_score

    np.testing.assert_allclose(lat.auc_columns(z, y), [roc_auc_score(y, z[:, j]) for j in range(5)], rtol=1e-12)


def test_sae_specs_and_names():
    from jaxdis.methods.sae import group_specs, sae_specs

    specs = sae_specs(ConfigDict({"n_latents": 64, "saes": [(8, 0), (16, 1), (128, 8, 0)]}))
    assert [s[0] for s in specs] == ["k8_s0", "k16_s1", "L128_k8_s0"]
    assert list(group_specs(specs)) == ["L64", "L128"]


def test_probe_labels_take_the_run_name_only_where_runs_collide():
    from jaxdis.eval.commands.sae_probe import label_by_run
    from jaxdis.models.sae import TrainedSAE

    def sae(latents, k, seed=0):
        return TrainedSAE(f"k{k}_s{seed}", k, {"W_dec": np.zeros((latents, 4), np.float32)}, seed=seed)

    runs = [("runs/plain/", [sae(64, 8), sae(128, 8)]), ("runs/matryoshka", [sae(64, 8)]), ("runs/other", [sae(32, 4)])]
    labels = [s.label for s in label_by_run(runs)]
    assert labels == ["plain_L64_k8_s0", "plain_L128_k8_s0", "matryoshka_L64_k8_s0", "L32_k4_s0"]
    for second in ("b/run", "a/run"):                  # the same directory name, or the same run twice
        with pytest.raises(SystemExit, match="distinct directory names"):
            label_by_run([("a/run", [sae(64, 8)]), (second, [sae(64, 8)])])
