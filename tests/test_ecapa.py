"""ECAPA-TDNN model and losses: padding invariance (eval and train mode), reflect padding,
frame outputs, InfoNCE / AAM-softmax / CE against NumPy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdis.losses import aam_softmax, info_nce, softmax_ce
from jaxdis.models.ecapa import Ecapa, EcapaConfig, pad_same

CFG = EcapaConfig.from_name("tiny", input_dim=20, channels=(16, 16, 16, 16, 48), attention_channels=8,
                            se_channels=8, embed_dim=12)


def _variables(cfg=CFG, seed=0):
    """Random weights and non-trivial BatchNorm running statistics."""
    v = Ecapa(cfg).init(jax.random.PRNGKey(seed), jnp.zeros((1, 16, cfg.input_dim)))
    rng = np.random.default_rng(seed)
    stats = jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.asarray(rng.uniform(0.5, 2.0, x.shape) if p[-1].key == "var" else rng.normal(0, 0.3, x.shape),
                                 jnp.float32), v["batch_stats"])
    return {"params": v["params"], "batch_stats": stats}


def _batch(utts, length, garbage=1e3, seed=0):
    """Utterances right-padded to `length` with large random values (not zeros) and a mask."""
    rng = np.random.default_rng(seed)
    x = garbage * rng.standard_normal((len(utts), length, utts[0].shape[1])).astype(np.float32)
    mask = np.zeros((len(utts), length), bool)
    for i, u in enumerate(utts):
        x[i, :len(u)] = u
        mask[i, :len(u)] = True
    return jnp.asarray(x), jnp.asarray(mask)


def test_pad_same_reflects_each_utterance_at_its_own_end():
    rng = np.random.default_rng(0)
    lengths = np.array([9, 5, 12])
    x = rng.standard_normal((3, 12, 2)).astype(np.float32)
    for pad in (1, 2, 4):
        out = np.asarray(pad_same(jnp.asarray(x), jnp.asarray(lengths), pad, "reflect"))
        zeros = np.asarray(pad_same(jnp.asarray(x), jnp.asarray(lengths), pad, "zeros"))
        for i, n in enumerate(lengths):
            ref = np.pad(x[i, :n], ((pad, pad), (0, 0)), mode="reflect")        # torch/numpy on the utterance alone
            np.testing.assert_array_equal(out[i, :n + 2 * pad], ref)
            np.testing.assert_array_equal(zeros[i, :n + 2 * pad], np.pad(x[i, :n], ((pad, pad), (0, 0))))


@pytest.mark.parametrize("mode", ["reflect", "zeros"])
def test_embedding_ignores_padding_and_batch(mode):
    cfg = CFG.replace(padding_mode=mode)
    v = _variables(cfg)
    apply = jax.jit(Ecapa(cfg).apply)
    rng = np.random.default_rng(1)
    utts = [rng.standard_normal((n, cfg.input_dim)).astype(np.float32) for n in (37, 50, 23)]
    alone = [apply(v, jnp.asarray(u[None])) for u in utts]                     # no mask, no padding

    for idx, length in (([0, 1, 2], 50), ([2, 0], 64)):                         # other batch size and padding
        x, mask = _batch([utts[i] for i in idx], length)
        emb, frames = apply(v, x, mask)
        assert emb.shape == (len(idx), cfg.embed_dim) and len(frames) == len(cfg.channels)
        for r, i in enumerate(idx):
            n = len(utts[i])
            np.testing.assert_allclose(emb[r], alone[i][0][0], rtol=1e-5, atol=1e-5)
            for z, z_alone in zip(frames, alone[i][1]):
                np.testing.assert_allclose(z[r, :n], z_alone[0], rtol=1e-5, atol=1e-5)
                assert not np.any(np.asarray(z[r, n:]))                        # padded frames are zero


def test_train_mode_batchnorm_ignores_padding():
    """Batch statistics come from real frames only: extra padding changes neither the
    embeddings nor the running averages."""
    v = _variables()
    apply = jax.jit(lambda v, x, mask: Ecapa(CFG).apply(v, x, mask, train=True, mutable=["batch_stats"]))
    rng = np.random.default_rng(2)
    utts = [rng.standard_normal((33, CFG.input_dim)).astype(np.float32) for _ in range(3)]
    x, mask = _batch(utts, 33)
    xp, maskp = _batch(utts, 47)
    (e1, _), s1 = apply(v, x, mask)
    (e2, _), s2 = apply(v, xp, maskp)
    # float32 sums over a longer padded axis reorder additions: ~1e-5 absolute drift is rounding
    np.testing.assert_allclose(e1, e2, rtol=1e-4, atol=5e-5)
    for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # and the statistics did move away from the stored ones
    assert not np.allclose(jax.tree.leaves(s1)[0], jax.tree.leaves(v["batch_stats"])[0])


def _nt_xent_reference(z1, z2, tau):
    z = np.concatenate([z1, z2]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n, b = len(z), len(z1)
    total = 0.0
    for i in range(n):
        pos = (i + b) % n
        sims = np.array([z[i] @ z[k] / tau for k in range(n) if k != i])
        total += -(z[i] @ z[pos] / tau) + math.log(np.exp(sims).sum())
    return total / n


def test_info_nce_matches_reference():
    rng = np.random.default_rng(3)
    z1, z2 = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    for tau in (0.1, 1.0):
        loss, m = info_nce(jnp.asarray(z1), jnp.asarray(z2), tau)
        assert float(loss) == pytest.approx(_nt_xent_reference(z1, z2, tau), rel=1e-5)
    # identical views, orthogonal items: the positive always wins
    e = np.eye(6, 8)
    loss, m = info_nce(jnp.asarray(e), jnp.asarray(e), 0.1)
    assert float(m["nce_acc"]) == 1.0
    assert float(loss) == pytest.approx(-math.log(math.exp(10) / (math.exp(10) + 10)), abs=1e-6)


def test_aam_softmax_matches_reference():
    rng = np.random.default_rng(4)
    emb, w = rng.standard_normal((7, 6)), rng.standard_normal((5, 6))
    labels = np.array([0, 1, 2, 3, 4, 0, 1])
    cos = (emb / np.linalg.norm(emb, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T
    m, s = 0.2, 30.0
    theta = np.arccos(np.clip(cos, -1, 1))
    target = np.where(theta + m <= np.pi, np.cos(theta + m), cos - m * np.sin(m))   # fallback past π
    logits = s * np.where(np.eye(5)[labels] > 0, target, cos)
    ref = np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(7), labels])
    loss, metrics = aam_softmax(jnp.asarray(emb), jnp.asarray(w), jnp.asarray(labels), m, s)
    assert float(loss) == pytest.approx(ref, rel=1e-4)
    assert float(metrics["acc"]) == pytest.approx(np.mean(cos.argmax(1) == labels))
    # margin 0: plain scaled-cosine softmax, equal to softmax_ce on s·cos
    l0, _ = aam_softmax(jnp.asarray(emb), jnp.asarray(w), jnp.asarray(labels), 0.0, s)
    ce, _ = softmax_ce(jnp.asarray(s * cos), jnp.asarray(labels))
    assert float(l0) == pytest.approx(float(ce), rel=1e-5)
    # the margin makes the loss larger
    assert float(loss) > float(l0)
