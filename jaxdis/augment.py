"""Autodecompose's complementary augmentations of mel crops, on device.

Every augmentation is a pure function ``f(rng, x) -> x'`` of one crop x (T, F) (time ×
mel bins, F = 80), shape-preserving, jit-able and vmapped over a batch by the ``batch_*``
wrappers (one key per row, split from the batch key). Random counts (5–20 inversions,
0–15 frequency masks) are drawn as numbers and applied through fixed-shape masks over the
maximum count, so nothing has a data-dependent shape and one compile serves every batch.

- ``keep_voice`` (the speaker encoder's view A(x): content changed, voice kept): time
  scrambling by 5–20 pivot inversions — each picks a random segment [a, b) of the time
  axis and reverses it (the paper's stronger form; the notebook's repeated circular rolls
  compose into a single roll) — then 2 time masks of 1–5 frames set to 0.
  Optionally (``channel_db > 0``) a random channel between the two: a gain and a spectral
  tilt across the mel axis, each uniform in ±channel_db dB. Loudness and microphone
  colouring are not the voice, so the view that keeps only the voice should change them;
  otherwise the speaker encoder also learns the recording channel, which varies between
  a speaker's recordings in real corpora (and per utterance in the built-in one).
- ``keep_content`` (the content encoder's view Ā(x): voice changed, content kept):
  frequency stretch or shrink by a factor 1 ± r, r ~ U[0.06, 0.21], resampled back to F
  bins by linear interpolation (the paper used a cubic spline, the notebook linear
  interpolation; bins mapped from beyond the top are 0, as in the notebook), then up to
  15 frequency masks (count ~ U{0..15}) of 1–5 bins set to 0, starting at bin 10 or above
  so the lowest 10 bins, which carry most of the content, are never masked.
- ``base`` (optional, applied to the reconstruction target before both views, as the
  notebook does): with probability 1/2 one circular roll of the time axis, 2 time masks
  of 1–5 frames, and 0–4 frame duplication/deletion pairs (duplicate one frame, delete
  another: a tiny local tempo jitter). It is light data augmentation of the target, not a
  view: both encoders' views are derived from the augmented target, so the loss stays
  the paper's eq. 2. Useful against overfitting on small corpora; off costs nothing.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

__all__ = [
    "time_scramble", "time_mask", "channel", "freq_stretch", "stretch_bins", "stretch_factor", "freq_mask",
    "frame_jitter", "keep_voice", "keep_content", "base",
    "batch_keep_voice", "batch_keep_content", "batch_base", "make_views",
]


def _randint(rng, lo, hi, shape=()):
    """Integers uniform in [lo, hi] (inclusive)."""
    return jax.random.randint(rng, shape, lo, hi + 1)


# ---------------------------------------------------------------------------------------
# Time axis
# ---------------------------------------------------------------------------------------

def time_scramble(rng: jax.Array, x: jax.Array, min_inversions: int = 5, max_inversions: int = 20) -> jax.Array:
    """Reverses n ~ U{min..max} random time segments in turn: x (T, F) → (T, F).

    A permutation of frames, so each bin's mean over time is unchanged. The inversions
    are composed on an index vector (T,) and applied with one gather.
    """
    t = x.shape[0]
    k_n, k_seg = jax.random.split(rng)
    n = _randint(k_n, min_inversions, max_inversions)
    ends = jnp.sort(_randint(k_seg, 0, t, (max_inversions, 2)), axis=-1)      # (K, 2) segment [lo, hi)
    pos = jnp.arange(t)

    def invert(i, perm):
        lo, hi = ends[i, 0], ends[i, 1]
        inside = (pos >= lo) & (pos < hi) & (i < n)
        return jnp.where(inside, perm[jnp.clip(lo + hi - 1 - pos, 0, t - 1)], perm)

    perm = jax.lax.fori_loop(0, max_inversions, invert, pos)                  # (T,)
    return x[perm]


def time_mask(rng: jax.Array, x: jax.Array, count: int = 2, max_width: int = 5) -> jax.Array:
    """Sets `count` segments of 1..max_width frames to 0: x (T, F) → (T, F)."""
    t = x.shape[0]
    k_w, k_s = jax.random.split(rng)
    width = _randint(k_w, 1, max_width, (count,))
    start = _randint(k_s, 0, t - 1, (count,))
    pos = jnp.arange(t)
    hit = ((pos[None] >= start[:, None]) & (pos[None] < (start + width)[:, None])).any(0)   # (T,)
    return jnp.where(hit[:, None], 0.0, x).astype(x.dtype)


def frame_jitter(rng: jax.Array, x: jax.Array, max_pairs: int = 4) -> jax.Array:
    """0..max_pairs times: duplicate one random frame and delete another (length kept)."""
    t = x.shape[0]
    k_n, k_d, k_r = jax.random.split(rng, 3)
    n = _randint(k_n, 0, max_pairs)
    dup = _randint(k_d, 0, t - 1, (max_pairs,))
    rem = _randint(k_r, 0, t - 1, (max_pairs,))
    pos = jnp.arange(t)

    def one(i, perm):
        # Insert a copy of perm[d] at d (sequence of T+1), then drop index r of that sequence.
        d, r = dup[i], rem[i]
        ext_pos = jnp.arange(t + 1)
        ext = perm[jnp.clip(jnp.where(ext_pos <= d, ext_pos, ext_pos - 1), 0, t - 1)]   # (T+1,)
        r = r + (r > d)                                                        # frame r's place in ext
        src = jnp.where(pos < r, pos, pos + 1)                                 # skip it
        return jnp.where(i < n, ext[src], perm)

    perm = jax.lax.fori_loop(0, max_pairs, one, pos)
    return x[perm]


def channel(rng: jax.Array, x: jax.Array, max_db: float = 6.0, db_range: float = 200.0) -> jax.Array:
    """A random recording channel: gain g and tilt s, each ~ U[-max_db, max_db] dB, added
    as g + s·(f/(F−1) − ½) dB to every frame of x (T, F), whose values are dB / db_range
    (the Autodecompose mel scaling (dB + 100) / 200)."""
    k_g, k_s = jax.random.split(rng)
    gain = jax.random.uniform(k_g, (), minval=-max_db, maxval=max_db)
    tilt = jax.random.uniform(k_s, (), minval=-max_db, maxval=max_db)
    ramp = jnp.linspace(-0.5, 0.5, x.shape[-1])
    return (x + (gain + tilt * ramp) / db_range).astype(x.dtype)


# ---------------------------------------------------------------------------------------
# Frequency axis
# ---------------------------------------------------------------------------------------

def stretch_factor(rng: jax.Array, min_rate: float = 0.06, max_rate: float = 0.21) -> jax.Array:
    """1 ± r with r ~ U[min_rate, max_rate] and a fair random sign."""
    k_r, k_s = jax.random.split(rng)
    r = jax.random.uniform(k_r, (), minval=min_rate, maxval=max_rate)
    return 1.0 + jnp.where(jax.random.bernoulli(k_s), r, -r)


def stretch_bins(x: jax.Array, factor: jax.Array) -> jax.Array:
    """Stretches the bin axis by `factor` (> 1 moves energy up, < 1 down) with linear
    interpolation back to F bins: out[:, j] = x at fractional bin j / factor, 0 past the top."""
    f = x.shape[-1]
    src = jnp.arange(f, dtype=jnp.float32) / factor                           # (F,)
    lo = jnp.floor(src).astype(jnp.int32)
    w = (src - lo).astype(x.dtype)
    lo_c, hi_c = jnp.clip(lo, 0, f - 1), jnp.clip(lo + 1, 0, f - 1)
    out = x[..., lo_c] * (1 - w) + x[..., hi_c] * w
    return jnp.where(src <= f - 1, out, 0.0).astype(x.dtype)


def freq_stretch(rng: jax.Array, x: jax.Array, min_rate: float = 0.06, max_rate: float = 0.21) -> jax.Array:
    """Random stretch/shrink of the mel axis: x (T, F) → (T, F); factor = stretch_factor(rng)."""
    return stretch_bins(x, stretch_factor(rng, min_rate, max_rate))


def freq_mask(rng: jax.Array, x: jax.Array, max_count: int = 15, max_width: int = 5, min_bin: int = 10) -> jax.Array:
    """Sets n ~ U{0..max_count} bands of 1..max_width bins, starting at bin ≥ min_bin, to 0."""
    f = x.shape[-1]
    k_n, k_w, k_s = jax.random.split(rng, 3)
    n = _randint(k_n, 0, max_count)
    width = _randint(k_w, 1, max_width, (max_count,))
    start = _randint(k_s, min_bin, f - 1, (max_count,))
    active = jnp.arange(max_count) < n
    b = jnp.arange(f)
    hit = ((b[None] >= start[:, None]) & (b[None] < (start + width)[:, None]) & active[:, None]).any(0)  # (F,)
    return jnp.where(hit[None, :], 0.0, x).astype(x.dtype)


# ---------------------------------------------------------------------------------------
# The views
# ---------------------------------------------------------------------------------------

def keep_voice(rng: jax.Array, x: jax.Array, min_inversions: int = 5, max_inversions: int = 20,
               time_masks: int = 2, max_mask_width: int = 5, channel_db: float = 0.0) -> jax.Array:
    """A(x): scrambles time (changes content), keeps spectral shape (voice); with
    channel_db > 0 also a random channel gain and tilt. (T, F) → (T, F)."""
    k1, k2, k3 = jax.random.split(rng, 3)
    x = time_scramble(k1, x, min_inversions, max_inversions)
    if channel_db > 0:
        x = channel(k3, x, channel_db)
    return time_mask(k2, x, time_masks, max_mask_width)


def keep_content(rng: jax.Array, x: jax.Array, min_rate: float = 0.06, max_rate: float = 0.21,
                 freq_masks: int = 15, max_mask_width: int = 5, min_bin: int = 10) -> jax.Array:
    """Ā(x): stretches and masks the mel axis (changes voice), keeps time order (content)."""
    k1, k2 = jax.random.split(rng)
    x = freq_stretch(k1, x, min_rate, max_rate)
    return freq_mask(k2, x, freq_masks, max_mask_width, min_bin)


def base(rng: jax.Array, x: jax.Array, roll_prob: float = 0.5, time_masks: int = 2, max_mask_width: int = 5,
         max_jitter_pairs: int = 4) -> jax.Array:
    """The notebook's light augmentation of the target: a circular roll (with prob.
    roll_prob), time masks, frame duplication/deletion. (T, F) → (T, F)."""
    t = x.shape[0]
    k_p, k_s, k_m, k_j = jax.random.split(rng, 4)
    shift = jnp.where(jax.random.bernoulli(k_p, roll_prob), _randint(k_s, 1, t - 1), 0)
    x = jnp.roll(x, -shift, axis=0)
    x = time_mask(k_m, x, time_masks, max_mask_width)
    return frame_jitter(k_j, x, max_jitter_pairs)


def _batched(fn):
    """(rng, x (B, T, F), **static) → (B, T, F): one key per row, jitted, vmapped."""

    @functools.partial(jax.jit, static_argnames=("kwargs_items",))
    def run(rng, x, kwargs_items=()):
        keys = jax.random.split(rng, x.shape[0])
        return jax.vmap(functools.partial(fn, **dict(kwargs_items)))(keys, x)

    @functools.wraps(fn)
    def wrapper(rng, x, **kwargs):
        return run(rng, x, tuple(sorted(kwargs.items())))

    wrapper.__doc__ = f"Batched {fn.__name__}: rng, x (B, T, F) → (B, T, F), one key per row.\n\n{fn.__doc__}"
    return wrapper


batch_keep_voice = _batched(keep_voice)
batch_keep_content = _batched(keep_content)
batch_base = _batched(base)


@functools.partial(jax.jit, static_argnames=("use_base", "channel_db"))
def make_views(rng: jax.Array, x: jax.Array, use_base: bool = True,
               channel_db: float = 0.0) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One training example per row: x (B, T, F) → (target, voice_view, content_view).

    target = base(x) (or x), voice_view = keep_voice(target) for the speaker encoder,
    content_view = keep_content(target) for the content encoder; loss = ‖D(E_s(voice_view),
    E_c(content_view)) − target‖² (paper eq. 2).
    """
    k_b, k_v, k_c = jax.random.split(rng, 3)
    b = x.shape[0]
    target = jax.vmap(base)(jax.random.split(k_b, b), x) if use_base else x
    voice = jax.vmap(functools.partial(keep_voice, channel_db=channel_db))(jax.random.split(k_v, b), target)
    content = jax.vmap(keep_content)(jax.random.split(k_c, b), target)
    return target, voice, content
