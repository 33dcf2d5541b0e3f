"""CLUB estimators (jaxdis/club.py): exact values on hand-built cases, the bound on
correlated Gaussians with known MI, and a toy encoder whose true MI CLUB drives down.

Each training test is one compiled lax.scan, vmapped over its settings."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdis import club

RHOS = np.array([0.0, 0.3, 0.5, 0.7, 0.9], np.float32)
DIM = 4


def _brute_club(mu, logvar, y, mask):
    """Eq. 1 per frame index by explicit loops (numpy), anchors and negatives real."""
    b, t, _ = y.shape
    terms = []
    for i in range(b):
        for s in range(t):
            if not mask[i, s]:
                continue
            def lq(j):
                return -0.5 * np.sum((y[j, s] - mu[i, s]) ** 2 / np.exp(logvar[i, s]))
            negs = [lq(j) for j in range(b) if mask[j, s]]
            terms.append(lq(i) - np.mean(negs))
    return float(np.mean(terms))


def test_all_pairs_matches_brute_force_and_ignores_padding():
    rng = np.random.default_rng(0)
    b, t, d = 5, 7, 3
    mu, logvar, y = (rng.standard_normal((b, t, d)).astype(np.float32) for _ in range(3))
    mask = rng.random((b, t)) > 0.3
    got = float(club.club(jnp.asarray(mu), jnp.asarray(logvar), jnp.asarray(y), jnp.asarray(mask)))
    np.testing.assert_allclose(got, _brute_club(mu, logvar, y, mask), rtol=1e-4)
    # Garbage in the padded frames changes nothing.
    junk = np.where(mask[..., None], 0, 1e3).astype(np.float32)
    again = club.club(jnp.asarray(mu + junk), jnp.asarray(logvar + junk / 1e3), jnp.asarray(y - junk), jnp.asarray(mask))
    np.testing.assert_allclose(float(again), got, rtol=1e-4)


def test_utterance_x_broadcasts_and_single_frame_is_eq1():
    rng = np.random.default_rng(1)
    b, t, d = 6, 4, 3
    mu, logvar = rng.standard_normal((b, d)).astype(np.float32), rng.standard_normal((b, d)).astype(np.float32)
    y = rng.standard_normal((b, t, d)).astype(np.float32)
    framed = club.club(jnp.asarray(np.repeat(mu[:, None], t, 1)), jnp.asarray(np.repeat(logvar[:, None], t, 1)),
                       jnp.asarray(y))
    np.testing.assert_allclose(float(club.club(jnp.asarray(mu), jnp.asarray(logvar), jnp.asarray(y))),
                               float(framed), rtol=1e-5)
    flat = club.club(jnp.asarray(mu), jnp.asarray(logvar), jnp.asarray(y[:, 0]))
    np.testing.assert_allclose(float(flat), _brute_club(mu[:, None], logvar[:, None], y[:, :1], np.ones((b, 1), bool)),
                               rtol=1e-5)


def test_sample_estimator_is_unbiased_for_all_pairs():
    rng = np.random.default_rng(2)
    mu, logvar, y = (jnp.asarray(rng.standard_normal((16, 3, 2)), jnp.float32) for _ in range(3))
    full = float(club.club(mu, logvar, y))
    keys = jax.random.split(jax.random.PRNGKey(0), 2000)
    samples = jax.jit(jax.vmap(lambda k: club.club(mu, logvar, y, estimator="sample", key=k)))(keys)
    assert abs(float(samples.mean()) - full) < 4 * float(samples.std()) / np.sqrt(len(keys)) + 1e-3


def test_log_likelihood_matches_scipy_normal():
    from scipy.stats import norm

    rng = np.random.default_rng(3)
    mu, logvar, y = (rng.standard_normal((4, 3)) for _ in range(3))
    want = norm.logpdf(y, mu, np.exp(0.5 * logvar)).sum(-1)
    np.testing.assert_allclose(np.asarray(club.log_likelihood(jnp.asarray(mu), jnp.asarray(logvar), jnp.asarray(y))),
                               want, rtol=1e-5)


def _gaussians(key, rho, n):
    kx, ke = jax.random.split(key)
    x = jax.random.normal(kx, (n, DIM))
    return x, rho * x + jnp.sqrt(1 - rho ** 2) * jax.random.normal(ke, (n, DIM))


@functools.partial(jax.jit, static_argnames=("variance",))
def _fit_and_estimate(rhos, variance):
    """Fits q for each ρ (300 Adam steps of max likelihood), then CLUB on 8192 fresh pairs."""
    net = club.ClubNet(DIM, hidden=32, variance=variance)
    tx = optax.adam(1e-2)

    def one(rho, key):
        k0, k_train, k_eval = jax.random.split(key, 3)
        params = net.init(k0, jnp.zeros((1, DIM)))["params"]

        def step(carry, k):
            params, opt = carry
            x, y = _gaussians(k, rho, 256)
            g = jax.grad(lambda p: club.nll(*net.apply({"params": p}, x), y))(params)
            upd, opt = tx.update(g, opt, params)
            return (optax.apply_updates(params, upd), opt), None

        (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), jax.random.split(k_train, 300))
        x, y = _gaussians(k_eval, rho, 8192)
        mu, logvar = net.apply({"params": params}, x)
        return _chunked_club(mu, logvar, y)

    return jax.vmap(one)(rhos, jax.random.split(jax.random.PRNGKey(0), len(rhos)))


def _chunked_club(mu, logvar, y, chunk=1024):
    """All-pairs CLUB of a large sample as the mean of per-chunk estimates (bounded memory)."""
    n = mu.shape[0] // chunk
    r = lambda a: a[:n * chunk].reshape(n, chunk, -1)
    return jnp.mean(jax.vmap(club.club)(r(mu), r(logvar), r(y)))


@pytest.mark.parametrize("variance", ["softplus", "linear"])
def test_club_upper_bounds_and_tracks_gaussian_mi(variance):
    est = np.asarray(_fit_and_estimate(jnp.asarray(RHOS), variance))
    true = np.asarray(club.gaussian_mi(RHOS, DIM))
    exact_q = np.asarray(club.gaussian_club(RHOS, DIM))
    assert np.all(np.diff(est) > 0), est                                      # tracks ρ
    assert np.all(est[1:] >= true[1:]), (est, true)                           # upper bound
    np.testing.assert_allclose(est, exact_q, rtol=0.15, atol=0.05)            # the bound the exact q gives


def test_club_mean_is_d_rho_squared():
    """CLUBMean (unit variance) converges to d ρ²: a sound estimate only for small ρ."""
    est = np.asarray(_fit_and_estimate(jnp.asarray(RHOS), "unit"))
    np.testing.assert_allclose(est, DIM * RHOS ** 2, rtol=0.1, atol=0.05)


def _linear_mi(w_s, w_c, noise):
    """True I(s; y) for y = W_s s + W_c c + noise·ε with s, c, ε standard normal."""
    eye = jnp.eye(w_s.shape[0])
    cond = w_c @ w_c.T + noise ** 2 * eye
    _, full = jnp.linalg.slogdet(w_s @ w_s.T + cond)
    _, part = jnp.linalg.slogdet(cond)
    return 0.5 * (full - part)


@jax.jit
def _toy_encoder(lams):
    """Encoder y = W [s; c] + ε (4-d: room to carry s where the decoder does not look) trained to let a linear decoder recover c, plus λ·CLUB(s; y),
    with q trained in the same step by split_losses. Returns the true I(s; y) before/after."""
    d, noise = 2, 0.1
    net = club.ClubNet(2 * d, hidden=32)
    tx = optax.adam(1e-2)

    def one(lam, key):
        k_w, k_q, k_train = jax.random.split(key, 3)
        params = {"w": jax.random.normal(k_w, (2 * d, 2 * d)) / np.sqrt(d), "dec": jnp.eye(d, 2 * d),
                  "q": net.init(k_q, jnp.zeros((1, d)))["params"]}

        def loss(p, k):
            ks, kc, ke, kn = jax.random.split(k, 4)
            s, c = jax.random.normal(ks, (256, d)), jax.random.normal(kc, (256, d))
            y = jnp.concatenate([s, c], 1) @ p["w"].T + noise * jax.random.normal(ke, (256, 2 * d))
            task = jnp.mean(jnp.sum((y @ p["dec"].T - c) ** 2, -1))
            mi, q_nll, _ = club.split_losses(net, p["q"], s, y, estimator="sample", key=kn)
            return task + lam * mi + q_nll

        def step(carry, k):
            p, opt = carry
            upd, opt = tx.update(jax.grad(loss)(p, k), opt, p)
            return (optax.apply_updates(p, upd), opt), None

        before = _linear_mi(params["w"][:, :d], params["w"][:, d:], noise)
        (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), jax.random.split(k_train, 300))
        return before, _linear_mi(params["w"][:, :d], params["w"][:, d:], noise)

    return jax.vmap(one)(lams, jax.random.split(jax.random.PRNGKey(0), len(lams)))


def test_minimising_club_drives_true_mi_down():
    before, after = (np.asarray(a) for a in _toy_encoder(jnp.asarray([0.0, 1.0])))
    print("true I(s; y) before", before, "after", after)
    assert np.all(before > 0.3), before
    assert after[1] < 0.1 * before[1], (before, after)                       # λ > 0: the s information is removed
    assert after[0] > 0.5 * before[0], (before, after)                       # λ = 0: it stays


def test_split_losses_route_gradients():
    """mi's gradient reaches the inputs only, q_nll's the q parameters only."""
    net = club.ClubNet(3, hidden=8)
    rng = np.random.default_rng(4)
    x, y = jnp.asarray(rng.standard_normal((8, 2)), jnp.float32), jnp.asarray(rng.standard_normal((8, 3)), jnp.float32)
    q = net.init(jax.random.PRNGKey(0), x)["params"]
    grads = jax.jit(lambda q, x, y: [jax.grad(lambda *a: club.split_losses(net, *a)[i], argnums=(0, 1, 2))(q, x, y)
                                     for i in (0, 1)])
    g_mi, g_nll = grads(q, x, y)
    norm = lambda t: float(optax.tree.norm(t))
    assert norm(g_mi[0]) == 0 and norm(g_mi[1]) > 0 and norm(g_mi[2]) > 0
    assert norm(g_nll[0]) > 0 and norm(g_nll[1]) == 0 and norm(g_nll[2]) == 0
