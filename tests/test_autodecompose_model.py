"""Autodecompose models at tiny sizes: shapes, BatchNorm state, encoders, the LSTM's math,
and (with torch) equality with the benchmark's PyTorch implementation."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdis.models.autodecompose import LSTM, PAPER_SIZES, TINY_SIZES, make_model, time_mean

B, T = 3, 16


@pytest.fixture(scope="module")
def x():
    k1, k2 = jax.random.split(jax.random.key(0))
    return jax.random.uniform(k1, (B, T, 80)), jax.random.uniform(k2, (B, T, 80))


@pytest.mark.parametrize("variant", ["dense", "conv", "lstm", "large"])
def test_variant_shapes_and_state(variant, x):
    xv, xc = x
    model = make_model(variant, "tiny")
    variables = model.init(jax.random.key(1), xv, xc)
    has_bn = variant != "lstm"
    assert ("batch_stats" in variables) == has_bn
    (recon, codes), upd = model.apply(variables, xv, xc, train=True, mutable=["batch_stats"])
    code = TINY_SIZES["code"]
    assert recon.shape == (B, T, 80)
    assert codes["speaker"].shape == codes["content"].shape == (B, T, code)
    if has_bn:                                                                   # train mode moves the stats
        before = jax.tree.leaves(variables["batch_stats"])
        after = jax.tree.leaves(upd["batch_stats"])
        assert any(float(jnp.abs(a - b).max()) > 0 for a, b in zip(before, after))
    # eval mode: the encoder methods give the codes __call__ uses
    recon_e, codes_e = model.apply(variables, xv, xc, train=False)
    s = model.apply(variables, xv, method=model.encode_speaker)
    c = model.apply(variables, xc, method=model.encode_content)
    np.testing.assert_allclose(np.asarray(s), np.asarray(codes_e["speaker"]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(c), np.asarray(codes_e["content"]), atol=1e-6)
    assert float(jnp.abs(s - c).max()) > 0                                      # two encoders, own weights


def test_large_paper_parameter_count():
    """Same count as the notebook's Keras model (Keras LSTM: 4·(in·H + H·H + H))."""
    model = make_model("large")
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 80)), jnp.zeros((1, 64, 80))))
    n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"]))
    s = PAPER_SIZES

    def conv(i, o):
        return 5 * i * o + o + 2 * o                                             # kernel, bias, BN scale/shift

    def lstm(i, h):
        return 4 * (i * h + h * h + h)

    enc = conv(80, 512) + 2 * conv(512, 512) + lstm(512, 256) + 2 * lstm(256, 256) + 256 * 128 + 128
    dec = conv(256, 512) + conv(512, 512) + lstm(512, 512) + lstm(512, 512) + 512 * 80 + 80
    assert n == 2 * enc + dec == 15_612_240
    assert s["enc_lstm"] == 256 and s["dec_lstm"] == 512


def test_lstm_matches_reference_step_loop():
    """The scanned LSTM (hand-written backward, and the nn.RNN cell unrolled) equals an
    explicit numpy loop of the Keras/PyTorch equations; time-major gives the same."""
    xs = np.asarray(jax.random.normal(jax.random.key(2), (2, 7, 5)))
    layer = LSTM(4)
    v = layer.init(jax.random.key(3), xs)
    y = np.asarray(layer.apply(v, xs))
    y4 = np.asarray(LSTM(4, unroll=4, impl="rnn").apply(v, xs))
    wi, bi = np.asarray(v["params"]["input"]["kernel"]), np.asarray(v["params"]["input"]["bias"])
    wh = np.asarray(v["params"]["recurrence"]["recurrent_kernel"])
    np.testing.assert_allclose(bi[4:8], 1.0)                                     # unit forget bias
    sig = lambda z: 1 / (1 + np.exp(-z))
    h = c = np.zeros((2, 4))
    ref = []
    for t in range(7):
        z = xs[:, t] @ wi + bi + h @ wh
        i, f, g, o = np.split(z, 4, axis=-1)
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        ref.append(h)
    np.testing.assert_allclose(y, np.stack(ref, 1), atol=1e-5)
    np.testing.assert_allclose(y4, y, atol=1e-6)
    ytm = LSTM(4, time_major=True).apply(v, np.swapaxes(xs, 0, 1))                # (T, B, H) in and out
    np.testing.assert_allclose(np.swapaxes(np.asarray(ytm), 0, 1), y, atol=1e-6)


def test_fast_paths_match_plain_autodiff(x):
    """The whole large model, CPU fast paths on vs off (and nn.RNN): same loss and gradients."""
    xv, xc = x
    fast = make_model("large", "tiny", canonical_dots=True, lstm_impl="scan")
    plain = make_model("large", "tiny", canonical_dots=False, lstm_impl="rnn")
    v = fast.init(jax.random.key(7), xv, xc)

    def loss(m):
        def f(p):
            (r, _), _ = m.apply({"params": p, "batch_stats": v["batch_stats"]}, xv, xc, train=True,
                                mutable=["batch_stats"])
            return jnp.mean((r - xv) ** 2)
        return jax.jit(jax.value_and_grad(f))

    (lf, gf), (lp, gp) = loss(fast)(v["params"]), loss(plain)(v["params"])
    np.testing.assert_allclose(float(lf), float(lp), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(gf), jax.tree.leaves(gp)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_time_mean_and_factory_errors():
    codes = jnp.arange(24, dtype=jnp.float32).reshape(2, 4, 3)
    mask = jnp.array([[True, True, False, False], [True, True, True, True]])
    np.testing.assert_allclose(np.asarray(time_mean(codes, mask)), [[1.5, 2.5, 3.5], [16.5, 17.5, 18.5]])
    np.testing.assert_allclose(np.asarray(time_mean(codes)), np.asarray(codes.mean(1)))
    with pytest.raises(TypeError, match="nope"):
        make_model("large", nope=3)
    with pytest.raises(ValueError, match="unknown size"):
        make_model("large", "huge")
    m = make_model("conv", "tiny", decoder="dense", code=4)
    assert (m.encoder_variant, m.decoder_variant, m.code) == ("conv", "dense", 4)


@pytest.mark.torch
def test_same_as_benchmark_torch_model(x):
    """The PyTorch model of benchmarks/autodecompose.py, given the Flax weights, gives the
    same reconstruction: the benchmark compares like with like."""
    torch = pytest.importorskip("torch")
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "autodecompose.py")
    spec = importlib.util.spec_from_file_location("bench_autodecompose", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    xv, xc = x
    model = make_model("large", "tiny")
    v = model.init(jax.random.key(4), xv, xc)
    # move the BN running stats away from (0, 1) so the copy of the statistics is tested too
    _, upd = model.apply(v, xv, xc, train=True, mutable=["batch_stats"])
    v = {"params": v["params"], "batch_stats": upd["batch_stats"]}
    recon, _ = model.apply(v, xv, xc, train=False)
    tm = bench.torch_model(TINY_SIZES)
    bench.copy_weights(tm, v["params"], v["batch_stats"])
    tm.eval()
    with torch.no_grad():
        ref = tm(torch.from_numpy(np.array(xv)), torch.from_numpy(np.array(xc))).numpy()
    np.testing.assert_allclose(np.asarray(recon), ref, atol=1e-5)
    assert np.abs(ref).max() > 1e-2


def test_pooled_speaker_code_reaches_the_decoder_as_one_vector(x):
    """pool_speaker: recon depends on the speaker codes only through their crop mean."""
    xv, xc = x
    model = make_model("conv", "tiny", pool_speaker=True)
    variables = model.init(jax.random.key(1), xv, xc)
    recon, codes = model.apply(variables, xv, xc)
    s, c = codes["speaker"], codes["content"]
    shuffled = s[:, ::-1]                                                        # same mean, other frames
    np.testing.assert_allclose(np.asarray(model.apply(variables, shuffled, c, method=model.decode)),
                               np.asarray(recon), atol=1e-5)
    per_frame = make_model("conv", "tiny")                                       # the paper's wiring differs
    assert float(jnp.abs(per_frame.apply(variables, shuffled, c, method=per_frame.decode) - recon).max()) > 1e-4
