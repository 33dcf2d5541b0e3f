"""Spectral features in JAX: the Autodecompose mel front end and the usual log filterbank.

Two feature kinds, both 80 mel bins, both computed on device (jit, vmapped over a batch,
fixed shapes) and checked against librosa in ``tests/test_features.py``:

- ``"ad_mel"``, the Autodecompose front end (paper and official notebook): 16 kHz, a
  zero-phase 5th-order Butterworth high-pass at 30 Hz, a 0.96 gain and a ±5e-7 uniform
  dither (host side, numpy/scipy, deterministic: ``ad_preprocess``), then n_fft 256,
  hop 256 (no overlap, 62.5 frames/s), Hann window, power spectrum, librosa's default
  Slaney mel filterbank, 10·log10(max(p, 1e-10)) (``power_to_db`` with ref 1 and no
  top_db), then (dB + 100) / 200, which maps -100..+100 dB to 0..1.
- ``"fbank"``, the 25 ms / 10 ms log filterbank of the ECAPA and transformer paths: n_fft
  512, a 400-sample Hann window centred in the FFT frame (as librosa pads it), hop 160
  (100 frames/s), power spectrum, Slaney mel filterbank over 0–8 kHz, natural log with a
  floor: log(max(p, 1e-6)). No dither and no pre-emphasis.

Framing follows librosa's default ``center=True, pad_mode="constant"``: the signal is
zero-padded by n_fft // 2 on both sides and a signal of n samples gives 1 + n // hop
frames, frame t centred on sample t·hop. Because the padding is zeros, a batch of
zero-padded waveforms gives, for each utterance, exactly the frames librosa would give
for it alone; the frames past an utterance's own count are set to 0 and marked False in
``frame_mask``.

``corpus_features`` computes a whole corpus in length buckets (few compiled shapes) and
caches the result on disk; ``features_for_waves`` does the same for arbitrary audio.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "FeatureSpec", "SPECS", "AD_MEL", "FBANK",
    "ad_preprocess", "ad_mel", "log_fbank", "compute", "num_frames",
    "features_for_waves", "corpus_features", "cache_key",
]


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Everything that defines a feature kind (hashable: a static argument to jit and part
    of the cache key)."""

    name: str
    sample_rate: int = 16000
    n_fft: int = 256
    win_length: int = 256
    hop: int = 256
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = None          # None: sample_rate / 2 (librosa's default)
    log: str = "ad_db"                 # "ad_db": (10·log10(max(p, floor)) + 100) / 200; "ln": ln(max(p, floor))
    floor: float = 1e-10
    # Host-side preprocessing (ad_mel only).
    highpass_hz: float | None = None
    highpass_order: int = 5
    gain: float = 1.0
    dither: float = 0.0                # peak-to-peak amplitude of uniform dither
    cache_dtype: str = "float32"       # dtype of the on-disk cache


AD_MEL = FeatureSpec("ad_mel", n_fft=256, win_length=256, hop=256, log="ad_db", floor=1e-10,
                     highpass_hz=30.0, gain=0.96, dither=1e-6, cache_dtype="float16")
FBANK = FeatureSpec("fbank", n_fft=512, win_length=400, hop=160, log="ln", floor=1e-6, fmax=8000.0)
SPECS = {s.name: s for s in (AD_MEL, FBANK)}


def _spec(kind: str | FeatureSpec) -> FeatureSpec:
    if isinstance(kind, FeatureSpec):
        return kind
    if kind not in SPECS:
        raise ValueError(f"unknown feature kind {kind!r}; known: {sorted(SPECS)}")
    return SPECS[kind]


def num_frames(num_samples, spec: str | FeatureSpec = AD_MEL):
    """Frames for a signal of `num_samples` (librosa, center=True): 1 + n // hop."""
    return 1 + np.asarray(num_samples) // _spec(spec).hop


# ---------------------------------------------------------------------------------------
# Host-side constants and preprocessing
# ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _mel_basis(spec: FeatureSpec) -> np.ndarray:
    """(n_fft//2 + 1, n_mels) librosa Slaney filterbank, built once per spec."""
    import librosa

    fb = librosa.filters.mel(sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels,
                             fmin=spec.fmin, fmax=spec.fmax)
    return np.ascontiguousarray(fb.T.astype(np.float32))


@functools.lru_cache(maxsize=None)
def _window(spec: FeatureSpec) -> np.ndarray:
    """(n_fft,) periodic Hann of win_length, zero-padded to n_fft around the centre
    (what librosa does for win_length < n_fft)."""
    n = spec.win_length
    win = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
    lpad = (spec.n_fft - n) // 2
    return np.pad(win, (lpad, spec.n_fft - n - lpad)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _highpass_sos(spec: FeatureSpec):
    from scipy import signal

    return signal.butter(spec.highpass_order, spec.highpass_hz, btype="highpass", fs=spec.sample_rate,
                         output="sos")


def ad_preprocess(wave: np.ndarray, spec: str | FeatureSpec = AD_MEL, seed: int = 0) -> np.ndarray:
    """Host-side conditioning before the mel (numpy, deterministic for a given seed).

    For ad_mel: zero-phase (forward-backward) Butterworth high-pass, gain and a tiny
    uniform dither, as the official notebook does, so digital silence never hits the
    -100 dB floor everywhere. For specs without preprocessing this is a float32 copy.
    """
    spec = _spec(spec)
    y = np.asarray(wave, np.float64)
    if spec.highpass_hz and len(y) > 1:
        from scipy import signal

        sos = _highpass_sos(spec)
        # sosfiltfilt pads by 3 * (2 * sections) samples; shorter clips get a shorter pad.
        padlen = min(3 * 2 * len(sos), len(y) - 1)
        y = signal.sosfiltfilt(sos, y, padlen=padlen)
    y = y * spec.gain
    if spec.dither:
        y = y + (np.random.default_rng(seed).random(len(y)) - 0.5) * spec.dither
    return y.astype(np.float32)


# ---------------------------------------------------------------------------------------
# Device-side features
# ---------------------------------------------------------------------------------------

def _one(wave: jax.Array, length: jax.Array, spec: FeatureSpec) -> tuple[jax.Array, jax.Array]:
    """Features of one zero-padded waveform (N,) with `length` real samples."""
    n = wave.shape[0]
    wave = jnp.where(jnp.arange(n) < length, wave, 0.0)
    half = spec.n_fft // 2
    padded = jnp.pad(wave, (half, half))                                      # (N + n_fft,)
    f = n // spec.hop + 1
    if spec.hop == spec.n_fft:
        frames = padded[:f * spec.hop].reshape(f, spec.n_fft)                 # (F, n_fft)
    else:
        idx = jnp.arange(f)[:, None] * spec.hop + jnp.arange(spec.n_fft)[None, :]
        frames = padded[idx]                                                  # (F, n_fft)
    spec_c = jnp.fft.rfft(frames * _window(spec), axis=-1)                    # (F, n_fft//2+1)
    power = spec_c.real ** 2 + spec_c.imag ** 2
    mel = power @ _mel_basis(spec)                                            # (F, n_mels)
    if spec.log == "ad_db":
        out = (10.0 * jnp.log10(jnp.maximum(mel, spec.floor)) + 100.0) / 200.0
    elif spec.log == "ln":
        out = jnp.log(jnp.maximum(mel, spec.floor))
    else:
        raise ValueError(f"unknown log {spec.log!r}")
    mask = jnp.arange(f) < 1 + length // spec.hop                            # (F,)
    return jnp.where(mask[:, None], out, 0.0), mask


@functools.partial(jax.jit, static_argnames="spec")
def _batch(waves: jax.Array, lengths: jax.Array, spec: FeatureSpec) -> tuple[jax.Array, jax.Array]:
    return jax.vmap(functools.partial(_one, spec=spec))(waves, lengths)


def compute(waves, lengths=None, kind: str | FeatureSpec = "ad_mel") -> tuple[jax.Array, jax.Array]:
    """Features of a zero-padded batch: waves (B, N), lengths (B,) real samples (default N).

    Returns (feats (B, F, n_mels) float32, frame_mask (B, F) bool) with F = 1 + N // hop.
    Host preprocessing (``ad_preprocess``) is not applied here.
    """
    spec = _spec(kind)
    waves = jnp.asarray(waves, jnp.float32)
    if waves.ndim != 2:
        raise ValueError(f"waves must be (B, N), got shape {waves.shape}")
    if lengths is None:
        lengths = jnp.full((waves.shape[0],), waves.shape[1], jnp.int32)
    return _batch(waves, jnp.asarray(lengths, jnp.int32), spec)


def ad_mel(waves, lengths=None) -> tuple[jax.Array, jax.Array]:
    """Autodecompose mel of preprocessed 16 kHz waves (B, N) → (mel (B, F, 80) in ~[0, 1],
    frame_mask (B, F)); F = 1 + N // 256. See the module docstring for the exact recipe."""
    return compute(waves, lengths, AD_MEL)


def log_fbank(waves, lengths=None) -> tuple[jax.Array, jax.Array]:
    """25 ms / 10 ms 80-bin log filterbank of 16 kHz waves (B, N) → (feats (B, F, 80),
    frame_mask (B, F)); F = 1 + N // 160."""
    return compute(waves, lengths, FBANK)


# ---------------------------------------------------------------------------------------
# Many utterances: length buckets, few compiled shapes
# ---------------------------------------------------------------------------------------

def _buckets(lengths: np.ndarray, bucket: int, budget: int) -> list[tuple[int, np.ndarray, int]]:
    """Groups utterance indices into (padded_len, indices, rows) batches: lengths rounded up to a
    multiple of `bucket` samples, rows per batch fixed per padded length (budget // len),
    so only one shape compiles per padded length."""
    padded = np.maximum(-(-lengths // bucket), 1) * bucket
    out = []
    for plen in np.unique(padded):
        idx = np.flatnonzero(padded == plen)
        rows = max(1, budget // int(plen))
        for s in range(0, len(idx), rows):
            out.append((int(plen), idx[s:s + rows], rows))
    return out


def _compute_many(waves: Sequence[np.ndarray], spec: FeatureSpec, bucket_seconds: float = 2.0,
                  batch_seconds: float = 64.0, progress=None, preprocess: bool = True,
                  dtype=np.float32) -> list[np.ndarray]:
    """Features of many variable-length waveforms, in length buckets; returns (T_i, n_mels)."""
    lengths = np.array([len(w) for w in waves], np.int64)
    bucket = int(bucket_seconds * spec.sample_rate)
    budget = int(batch_seconds * spec.sample_rate)
    out: list[np.ndarray | None] = [None] * len(waves)
    for plen, idx, rows in _buckets(lengths, bucket, budget):
        batch = np.zeros((rows, plen), np.float32)                            # (B, N), padded rows too
        lens = np.zeros((rows,), np.int32)
        for r, i in enumerate(idx):
            w = ad_preprocess(waves[i], spec) if preprocess else np.asarray(waves[i], np.float32)
            batch[r, :len(w)] = w
            lens[r] = len(w)
        feats, _ = compute(batch, lens, spec)
        feats = np.asarray(feats)
        nf = num_frames(lens, spec)
        for r, i in enumerate(idx):
            out[i] = feats[r, :nf[r]].astype(dtype)
        if progress is not None:
            progress.update(len(idx))
    return out  # type: ignore[return-value]


def features_for_waves(waves: Sequence[np.ndarray] | np.ndarray, kind: str = "ad_mel",
                       preprocess: bool = True, dtype=np.float32) -> list[np.ndarray]:
    """Features of arbitrary 16 kHz mono audio: one (T_i, 80) array per waveform.

    With ``preprocess`` (default) the kind's host-side conditioning is applied first, as
    ``corpus_features`` does, so embeddings of new audio match those of a training corpus.
    A 2-D array is taken as a batch of equal-length waveforms.
    """
    if isinstance(waves, np.ndarray) and waves.ndim == 1:
        waves = [waves]
    waves = [np.asarray(w, np.float32) for w in waves]
    if any(w.ndim != 1 for w in waves):
        raise ValueError("each waveform must be 1-D (mono samples)")
    return _compute_many(waves, _spec(kind), preprocess=preprocess, dtype=dtype)


# ---------------------------------------------------------------------------------------
# Corpus features with an on-disk cache
# ---------------------------------------------------------------------------------------

_CACHE_VERSION = 1


def cache_key(paths: Sequence[str], kind: str | FeatureSpec = "ad_mel") -> str:
    """Hash of the files (path, size, mtime) and of every feature parameter."""
    spec = _spec(kind)
    h = hashlib.sha256()
    h.update(json.dumps({"version": _CACHE_VERSION, "spec": dataclasses.asdict(spec)}, sort_keys=True).encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()[:24]


def _subset(corpus, keep: np.ndarray):
    """The corpus restricted to rows where the bool mask `keep` is True."""
    if hasattr(corpus, "subset"):
        return corpus.subset(np.flatnonzero(keep))
    table = corpus.table[keep].reset_index(drop=True)
    if dataclasses.is_dataclass(corpus):
        return dataclasses.replace(corpus, table=table)
    return type(corpus)(table, corpus.name)


def _load_waveforms(corpus, sample_rate: int, skip_bad: bool):
    """``jaxdis.data.corpus.load_waveforms`` without its own progress bar (ours counts)."""
    import inspect

    from jaxdis.data.corpus import load_waveforms

    kwargs = {"progress": False} if "progress" in inspect.signature(load_waveforms).parameters else {}
    return load_waveforms(corpus, sample_rate=sample_rate, skip_bad=skip_bad, **kwargs)


def _write_cache(path: str, feats: list[np.ndarray], utt_ids: list[str], spec: FeatureSpec, n_total: int):
    """Writes frames/offsets/utt_ids into a temporary sibling folder, then renames it into
    place (atomic on one file system; a concurrent writer of the same key just loses)."""
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(path) + ".tmp-", dir=parent)
    try:
        lengths = np.array([len(f) for f in feats], np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        frames = (np.concatenate(feats, 0) if feats else np.zeros((0, spec.n_mels))).astype(spec.cache_dtype)
        np.save(os.path.join(tmp, "frames.npy"), frames)
        np.save(os.path.join(tmp, "offsets.npy"), offsets)
        with open(os.path.join(tmp, "utt_ids.json"), "w") as f:
            json.dump(list(map(str, utt_ids)), f)
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump({"spec": dataclasses.asdict(spec), "num_utterances": len(feats),
                       "num_requested": n_total, "num_frames": int(offsets[-1]),
                       "version": _CACHE_VERSION}, f, indent=1)
        try:
            os.rename(tmp, path)
        except OSError:
            if not os.path.isdir(path):
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _read_cache(path: str, dtype) -> tuple[list[str], list[np.ndarray]]:
    frames = np.load(os.path.join(path, "frames.npy"))
    offsets = np.load(os.path.join(path, "offsets.npy"))
    with open(os.path.join(path, "utt_ids.json")) as f:
        utt_ids = json.load(f)
    frames = frames.astype(dtype, copy=False)
    return utt_ids, [frames[offsets[i]:offsets[i + 1]] for i in range(len(utt_ids))]


def corpus_features(corpus, kind: str = "ad_mel", cache_dir: str | None = None, skip_bad: bool = False,
                    chunk_size: int = 256, dtype=np.float32, progress: bool = True) -> tuple[Any, list[np.ndarray]]:
    """Features of every utterance of a corpus: (kept_corpus, [(T_i, 80) arrays]).

    Waveforms are read with ``jaxdis.data.corpus.load_waveforms`` in chunks of
    `chunk_size` utterances (memory stays bounded), preprocessed on the host, and
    featurised on device in 2-second length buckets. The result is cached under
    ``<cache_dir>/features/<key>/`` (key: paths, sizes, mtimes, kind and all feature
    parameters): ``frames.npy`` (all frames concatenated; float16 for ad_mel, whose values
    lie in [0, 1] so the rounding error is below 2.5e-4, i.e. 0.05 dB; float32 for fbank),
    ``offsets.npy`` (N+1,), ``utt_ids.json``, ``meta.json``. Returned arrays are `dtype`.

    Unreadable files raise (naming the file) unless ``skip_bad``, in which case they are
    dropped with a warning that counts them; rows of kept_corpus align with the list.
    """
    from jaxdis.data.corpus import default_cache_dir

    spec = _spec(kind)
    table = corpus.table
    paths = [str(p) for p in table["path"]]
    utt_all = [str(u) for u in table["utt_id"]]
    path = os.path.join(cache_dir or default_cache_dir(), "features", f"{spec.name}-{cache_key(paths, spec)}")

    if os.path.isfile(os.path.join(path, "meta.json")):
        utt_ids, feats = _read_cache(path, dtype)
        dropped = len(utt_all) - len(utt_ids)
        if dropped == 0 or skip_bad:
            keep = np.isin(np.array(utt_all, dtype=object), np.array(utt_ids, dtype=object))
            if dropped:
                warnings.warn(f"{dropped} of {len(utt_all)} files of corpus {getattr(corpus, 'name', '?')!r} "
                              f"were unreadable when its features were cached ({path}); skipped")
            kept = _subset(corpus, keep)
            order = {u: i for i, u in enumerate(utt_ids)}
            return kept, [feats[order[str(u)]] for u in kept.table["utt_id"]]
        # The cache was built skipping bad files but the caller wants them reported: recompute.

    from tqdm.auto import tqdm

    bar = tqdm(total=len(paths), desc=f"{spec.name} features", unit="utt", disable=not progress)
    feats: list[np.ndarray] = []
    kept_ids: list[str] = []
    try:
        for s in range(0, len(paths), chunk_size):
            rows = np.zeros(len(paths), bool)
            rows[s:s + chunk_size] = True
            chunk = _subset(corpus, rows)
            kept_chunk, waves = _load_waveforms(chunk, spec.sample_rate, skip_bad)
            feats.extend(_compute_many(waves, spec, dtype=np.float32))
            kept_ids.extend(str(u) for u in kept_chunk.table["utt_id"])
            bar.update(int(rows.sum()))
    finally:
        bar.close()
    dropped = len(paths) - len(kept_ids)
    if dropped:
        warnings.warn(f"skipped {dropped} of {len(paths)} unreadable files of corpus "
                      f"{getattr(corpus, 'name', '?')!r}")
    _write_cache(path, feats, kept_ids, spec, len(paths))
    keep = np.isin(np.array(utt_all, dtype=object), np.array(kept_ids, dtype=object))
    kept = _subset(corpus, keep)
    # Round-trip through the cache dtype so a fresh run and a cached run return the same numbers.
    feats = [f.astype(spec.cache_dtype).astype(dtype) for f in feats]
    order = {u: i for i, u in enumerate(kept_ids)}
    return kept, [feats[order[str(u)]] for u in kept.table["utt_id"]]
