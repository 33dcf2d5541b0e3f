"""Autodecompose augmentations: shapes, determinism, and the properties each view must keep."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdis import augment as A

T, F = 64, 80


@pytest.fixture(scope="module")
def crops():
    return jax.random.uniform(jax.random.key(0), (6, T, F)) + 0.1                # (B, T, F), no zeros


@pytest.fixture(scope="module")
def batched(crops):
    """Each batched augmentation at two keys (one compile each)."""
    fns = {"keep_voice": A.batch_keep_voice, "keep_content": A.batch_keep_content, "base": A.batch_base}
    return {name: (np.asarray(f(jax.random.key(1), crops)), np.asarray(f(jax.random.key(1), crops)),
                   np.asarray(f(jax.random.key(2), crops))) for name, f in fns.items()}


@pytest.mark.parametrize("name", ["keep_voice", "keep_content", "base"])
def test_shape_determinism_and_keys(batched, crops, name):
    a, a_again, b = batched[name]
    assert a.shape == crops.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, a_again)                                    # same key, same output
    assert np.abs(a - b).mean() > 1e-2                                           # another key differs
    assert np.abs(a - np.asarray(crops)).mean() > 1e-2                           # it does something
    assert not np.allclose(a[0], a[1])                                           # rows get their own keys


def test_time_scramble_keeps_each_bins_mean(crops):
    x = crops[0]
    y = jax.jit(A.time_scramble)(jax.random.key(3), x)
    np.testing.assert_allclose(np.asarray(y.mean(0)), np.asarray(x.mean(0)), atol=1e-6)
    # a permutation of frames that really moves them
    rows = [int(np.argmin(np.abs(np.asarray(x) - r).sum(1))) for r in np.asarray(y)]
    assert sorted(rows) == list(range(T)) and rows != list(range(T))


def test_pivot_inversion_is_a_segment_reversal():
    """Frames are a ramp: one forced inversion reverses exactly one contiguous segment."""
    ramp = jnp.arange(T, dtype=jnp.float32)[:, None]
    nontrivial = 0
    for seed in range(4):
        y = np.asarray(A.time_scramble(jax.random.key(seed), ramp, min_inversions=1, max_inversions=1))[:, 0]
        moved = np.flatnonzero(y != np.arange(T))
        if len(moved):
            lo, hi = moved[0], moved[-1] + 1
            np.testing.assert_array_equal(y[lo:hi], np.arange(lo, hi)[::-1])
            nontrivial += 1
    assert nontrivial >= 3
    y20 = np.asarray(A.time_scramble(jax.random.key(0), ramp, 20, 20))[:, 0]
    assert (np.diff(y20) != 1).sum() > 10                                       # many breaks: scrambled


def test_keep_voice_masks_whole_frames(batched):
    v = batched["keep_voice"][0]                                                 # inputs have no zeros
    zero_frames = (v == 0).all(-1)
    assert np.array_equal((v == 0).any(-1), zero_frames)                         # masks span all bins
    assert np.all((zero_frames.sum(1) >= 1) & (zero_frames.sum(1) <= 10))       # 2 masks of 1..5 frames


def test_freq_masks_never_touch_low_bins(crops):
    x = jnp.ones((256, T, F))
    y = np.asarray(A.batch_keep_content(jax.random.key(5), x, min_rate=0.0, max_rate=0.0))
    zero_bins = (y == 0).all(1)                                                  # (B, F) masked bands
    assert not zero_bins[:, :10].any()
    assert zero_bins[:, 10:].any()
    counts = zero_bins.sum(1)
    assert counts.max() <= 15 * 5 and counts.min() == 0 and counts.max() >= 20  # 0..15 masks of ≤ 5 bins


def test_freq_stretch_moves_the_spectral_centroid():
    bins = jnp.arange(F, dtype=jnp.float32)
    x = jnp.tile(jnp.exp(-0.5 * ((bins - 30.0) / 3.0) ** 2), (T, 1))            # a formant at bin 30
    centroid = lambda s: float((np.asarray(s) * np.arange(F)).sum() / np.asarray(s).sum())
    assert centroid(A.stretch_bins(x, 1.2)) == pytest.approx(36.0, abs=0.3)
    assert centroid(A.stretch_bins(x, 0.85)) == pytest.approx(25.5, abs=0.3)
    for seed in range(6):
        k = jax.random.key(seed)
        factor = float(A.stretch_factor(k))
        assert 0.06 <= abs(factor - 1) <= 0.21
        moved = centroid(A.freq_stretch(k, x)) - 30.0
        assert moved == pytest.approx(30.0 * (factor - 1), abs=0.3) and abs(moved) > 1.5


def test_frame_jitter_and_views(crops):
    ramp = jnp.arange(T, dtype=jnp.float32)[:, None]
    y = np.asarray(A.frame_jitter(jax.random.key(6), ramp, 4))[:, 0]
    assert np.all(np.diff(y) >= 0) and len(set(y)) >= T - 4                   # order kept, ≤ 4 frames lost
    target, voice, content = A.make_views(jax.random.key(7), crops)
    assert target.shape == voice.shape == content.shape == crops.shape
    t0, _, _ = A.make_views(jax.random.key(7), crops, use_base=False)
    np.testing.assert_array_equal(np.asarray(t0), np.asarray(crops))


def test_channel_is_a_bounded_gain_and_linear_tilt(crops):
    """The optional channel of the voice view adds the same straight line (in dB across the
    mel bins, within ±max_db for gain and tilt) to every frame, and leaves content alone."""
    x = crops[0]
    for seed in range(3):
        delta = np.asarray(A.channel(jax.random.key(seed), x, max_db=6.0) - x) * 200.0   # back to dB
        np.testing.assert_allclose(delta, np.broadcast_to(delta[0], delta.shape), atol=1e-3)  # per-bin constant
        slope, gain = np.polyfit(np.linspace(-0.5, 0.5, F), delta[0], 1)
        np.testing.assert_allclose(delta[0], gain + slope * np.linspace(-0.5, 0.5, F), atol=1e-3)
        assert abs(gain) <= 6.0 and abs(slope) <= 6.0 and abs(gain) + abs(slope) > 0.1
    _, v0, _ = A.make_views(jax.random.key(9), crops, use_base=False)
    _, v6, _ = A.make_views(jax.random.key(9), crops, use_base=False, channel_db=6.0)
    shift = np.asarray(v6 - v0) * 200.0
    kept = np.asarray(v0) != 0                                                  # frames not masked in both
    assert np.abs(shift[kept]).max() <= 12.0 + 1e-3 and np.abs(shift[kept]).mean() > 0.1
