"""FrameEncoder shapes, padding, freezing and dtypes; MFCC and the pseudo-con loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.fft

from jaxdis.methods.transformer import mfcc, pseudo_con
from jaxdis.models.transformer import (FrameEncoder, FrameEncoderConfig, relative_position_buckets, trainable_mask,
                                       train_flops_per_frame)

TINY = FrameEncoderConfig.from_name("tiny", dropout=0.0)
PC = jax.jit(pseudo_con, static_argnames=("tau", "max_frames", "denominator", "normalize"))


def _wave(b=2, s=3200, seed=0):
    return np.random.default_rng(seed).standard_normal((b, s)).astype(np.float32)


def test_shapes_and_padding_invariance():
    """Real frames of a padded row equal the same utterance alone: padding never leaks
    through attention (keys masked) nor the positional conv (padded frames zeroed).
    The group-norm conv stack normalises over the padded length, as transformers does,
    so this uses the layer-norm stack."""
    cfg = TINY.replace(feat_norm="layer")
    wav = _wave(1, 3200)
    padded = np.concatenate([wav, np.zeros((1, 1600), np.float32)], 1)
    mask = np.arange(4800)[None] < 3200
    model = FrameEncoder(cfg)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), padded, mask)["params"]
    apply = jax.jit(model.apply)
    last_a, aux_a = apply({"params": params}, wav)
    last_b, aux_b = apply({"params": params}, padded, mask)
    t = cfg.num_frames(3200)
    assert last_a.shape == (1, t, 32) and last_b.shape == (1, cfg.num_frames(4800), 32)
    assert int(aux_b["mask"].sum()) == t
    assert len(aux_a["hidden_states"]) == cfg.layers + 1
    for a, b in zip(aux_a["hidden_states"], aux_b["hidden_states"]):
        np.testing.assert_allclose(np.asarray(b)[:, :t], np.asarray(a), atol=1e-5)


def test_fbank_frontend_and_span_mask_embedding():
    cfg = TINY.replace(frontend="fbank")
    x = np.random.default_rng(1).standard_normal((2, 41, 80)).astype(np.float32)
    mask = np.ones((2, 41), bool)
    mask[1, 30:] = False
    span = np.zeros((2, 20), bool)
    span[:, 3:8] = True
    model = FrameEncoder(cfg)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), x, mask, span)["params"]
    assert params["feature_projection"]["projection"]["kernel"].shape == (160, 32)
    apply = jax.jit(model.apply)
    last, aux = apply({"params": params}, x, mask, span)
    assert last.shape == (2, 20, 32)
    np.testing.assert_array_equal(np.asarray(aux["mask"]).sum(1), [20, 15])
    clean, _ = apply({"params": params}, x, mask, np.zeros_like(span))
    # masking frames 3–7 changes the output there (and, through attention, elsewhere)
    assert np.abs(np.asarray(last - clean))[:, 3:8].mean() > 1e-2


@pytest.mark.parametrize("frozen", [0, 1])
def test_frozen_layers_get_no_gradient_and_no_update(frozen):
    cfg = TINY.replace(frozen_layers=frozen)
    wav = _wave()
    span = np.zeros((2, cfg.num_frames(3200)), bool)
    span[:, 2:6] = True
    model = FrameEncoder(cfg)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), wav, span_mask=span)["params"]
    loss = lambda p: jnp.mean(model.apply({"params": p}, wav, span_mask=span)[0] ** 2)
    grads = jax.jit(jax.grad(loss))(params)
    trainable = trainable_mask(params, cfg)
    names = lambda tree: {"/".join(k.key for k in p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(tree)}
    g, t = names(grads), names(trainable)
    frozen_names = [n for n in g if not t[n]]
    assert any(n.startswith("feature_extractor/") for n in frozen_names)
    assert any(n.startswith("encoder_layers_0/") for n in frozen_names) == (frozen == 1)
    assert all(not g[n].any() for n in frozen_names)                     # no gradient reaches them
    assert np.abs(g["encoder_layers_1/attention/q_proj/kernel"]).max() > 0
    assert np.abs(g["masked_spec_embed"]).max() > 0
    # AdamW with weight decay would move zero-gradient weights: the set_to_zero branch must not.
    labels = jax.tree.map(lambda t: "train" if t else "frozen", trainable)
    tx = optax.multi_transform({"train": optax.adamw(1e-2, weight_decay=0.1), "frozen": optax.set_to_zero()}, labels)
    new = names(jax.jit(lambda p, g: optax.apply_updates(p, tx.update(g, tx.init(p), p)[0]))(params, grads))
    old = names(params)
    assert all(np.array_equal(old[n], new[n]) for n in frozen_names)
    assert not np.array_equal(old["encoder_layers_1/attention/q_proj/kernel"], new["encoder_layers_1/attention/q_proj/kernel"])


def test_bf16_compute_keeps_fp32_params_and_tracks_fp32():
    wav = _wave()
    model32 = FrameEncoder(TINY)
    params = jax.jit(model32.init)(jax.random.PRNGKey(0), wav)["params"]
    model16 = FrameEncoder(TINY.replace(dtype="bfloat16"))
    p16 = jax.eval_shape(model16.init, jax.random.PRNGKey(0), wav)["params"]
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(p16))
    a, _ = jax.jit(model32.apply)({"params": params}, wav)
    b, aux = jax.jit(model16.apply)({"params": params}, wav)
    assert b.dtype == jnp.bfloat16
    rel = float(jnp.linalg.norm(b.astype(jnp.float32) - a) / jnp.linalg.norm(a))
    assert rel < 0.05


def test_wavlm_buckets():
    b = relative_position_buckets(1000, 320, 800)
    assert b[0, 0] == 0 and b[0, 1] == 161 and b[1, 0] == 1   # key after query: upper half
    assert b[0, 79] == 160 + 79 and b[0, 80] == 160 + 80     # exact below 80
    assert b[0, 999] == 319 and b[999, 0] == 159             # clipped at the last bucket
    assert np.all(np.diff(b[0, 80:]) >= 0)                   # logarithmic, monotone


def test_mfcc_matches_scipy_dct():
    logmel = np.random.default_rng(2).standard_normal((3, 20, 80)).astype(np.float32)
    ours = np.asarray(mfcc(jnp.asarray(logmel), deltas=False))
    ref = scipy.fft.dct(logmel, type=2, norm="ortho", axis=-1)[..., :13]
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    full = np.asarray(mfcc(jnp.asarray(logmel)))
    assert full.shape == (3, 20, 39)
    # Δ of a linear ramp in time is its slope (away from the edges)
    ramp = np.broadcast_to(np.arange(20, dtype=np.float32)[:, None], (20, 80))[None]
    d = np.asarray(mfcc(jnp.asarray(ramp)))[0, 2:-2, 13]
    np.testing.assert_allclose(d, np.sqrt(80.0), rtol=1e-5)  # c0 = sqrt(80) · t


def _pc_reference(z, lab, tau, denominator):
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    s = z @ z.T / tau
    losses = []
    for t in range(len(z)):
        pos = [p for p in range(len(z)) if p != t and lab[p] == lab[t]]
        if not pos:
            continue
        den = [a for a in range(len(z)) if a != t and (lab[a] != lab[t] or denominator == "all")]
        log_den = np.log(np.sum(np.exp(s[t, den])))
        losses.append(-np.mean([s[t, p] - log_den for p in pos]))
    return np.mean(losses)


@pytest.mark.parametrize("denominator", ["negatives", "all"])
def test_pseudo_con_matches_reference(denominator):
    rng = np.random.default_rng(3)
    y = rng.standard_normal((2, 6, 8)).astype(np.float32)
    lab = rng.integers(0, 3, (2, 6))
    use = rng.random((2, 6)) < 0.7
    ours = float(PC(jnp.asarray(y), jnp.asarray(lab), jnp.asarray(use), jax.random.PRNGKey(0), tau=0.5,
                            max_frames=12, denominator=denominator))
    ref = _pc_reference(y.reshape(12, 8)[use.reshape(-1)], lab.reshape(-1)[use.reshape(-1)], 0.5, denominator)
    assert ours == pytest.approx(ref, rel=1e-4)


def test_pseudo_con_rewards_clustered_frames():
    """Frames that sit on their cluster's direction score lower than random ones."""
    rng = np.random.default_rng(4)
    lab = rng.integers(0, 4, (4, 32))
    dirs = rng.standard_normal((4, 16))
    good = dirs[lab] + 0.1 * rng.standard_normal((4, 32, 16))
    bad = rng.standard_normal((4, 32, 16))
    use = np.ones((4, 32), bool)
    f = lambda y: float(PC(jnp.asarray(y, jnp.float32), jnp.asarray(lab), jnp.asarray(use),
                                   jax.random.PRNGKey(0), max_frames=64))
    assert f(good) < f(bad) - 1.0


def test_flops_per_frame_base():
    """HuBERT Base: ≈ 2 × 94 M parameter multiply-adds per frame forward for the layers,
    plus the conv extractor (≈ 0.4 GFLOP per 20 ms frame) — sanity of the analytic count."""
    cfg = FrameEncoderConfig.from_name("base")
    fwd = train_flops_per_frame(cfg, 250) / 3
    layers = 12 * 2 * (4 * 768 ** 2 + 2 * 768 * 3072)
    assert layers < fwd < layers + 1.5e9


@pytest.mark.parametrize("stable", [False, True])
def test_canonical_matmuls_match_xla(stable):
    """The CPU path (dense layers and strided convs as canonical matmuls, im2col) has the
    same parameters, outputs and gradients as XLA's dots and convolutions."""
    from jaxdis.models.transformer import im2col

    x = np.random.default_rng(1).standard_normal((2, 23, 3)).astype(np.float32)
    for k, s in [(10, 5), (3, 2), (2, 2), (4, 3)]:
        w = np.random.default_rng(k).standard_normal((k, 3, 5)).astype(np.float32)
        ref = jax.lax.conv_general_dilated(x, w, (s,), "VALID", dimension_numbers=("NWC", "WIO", "NWC"))
        np.testing.assert_allclose(np.asarray(im2col(jnp.asarray(x), k, s) @ w.reshape(k * 3, 5)), ref, atol=1e-5)

    base = TINY.replace(stable_layer_norm=stable, feat_norm="layer" if stable else "group", conv_bias=stable)
    wav = _wave(2, 3200)
    mask = np.arange(3200)[None] < np.array([[3200], [2500]])
    outs = []
    for mode in ("xla", "canonical"):
        model = FrameEncoder(base.replace(matmuls=mode))
        params = jax.jit(model.init)(jax.random.PRNGKey(0), wav, mask)["params"]

        def loss(p):
            last, aux = model.apply({"params": p}, wav, mask)
            return jnp.sum(last ** 2) + sum(jnp.sum(h[:, ::3]) for h in aux["hidden_states"])

        outs.append((params, *jax.jit(jax.value_and_grad(loss))(params)))
    (p_x, l_x, g_x), (p_c, l_c, g_c) = outs
    assert jax.tree.structure(p_x) == jax.tree.structure(p_c)
    jax.tree.map(np.testing.assert_array_equal, p_x, p_c)  # same init
    np.testing.assert_allclose(l_c, l_x, rtol=1e-5)
    scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(g_x))  # some are 0 up to rounding (bias → LN)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * scale), g_c, g_x)
