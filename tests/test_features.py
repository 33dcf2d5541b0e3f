"""JAX features against librosa, bucketing, the corpus cache (tiny WAV corpus, real data layer)."""

import os

import numpy as np
import pandas as pd
import pytest

from jaxdis.data import features as F

SR = 16000


@pytest.fixture(scope="module")
def waves():
    """Three tone+noise signals of different lengths (no digital silence: the comparison
    is of the spectral pipeline, not of float32 rounding at the -100 dB floor)."""
    rng = np.random.default_rng(0)
    out = []
    for n in (2 * SR + 123, 7777, 12000):
        t = np.arange(n) / SR
        w = 0.3 * np.sin(2 * np.pi * (200 + 300 * rng.random()) * t) + 0.05 * rng.standard_normal(n)
        out.append(w.astype(np.float32))
    return out


def _padded(waves):
    lens = np.array([len(w) for w in waves])
    batch = np.zeros((len(waves), lens.max()), np.float32)
    for i, w in enumerate(waves):
        batch[i, :len(w)] = w
    return batch, lens


def test_ad_mel_matches_librosa(waves):
    import librosa

    batch, lens = _padded(waves)
    mel, mask = F.ad_mel(batch, lens)
    mel, mask = np.asarray(mel), np.asarray(mask)
    assert mel.shape == (3, 1 + lens.max() // 256, 80) and mask.shape == mel.shape[:2]
    for i, w in enumerate(waves):
        s = librosa.feature.melspectrogram(y=w, sr=SR, n_fft=256, hop_length=256, n_mels=80)
        ref = ((librosa.power_to_db(s, ref=1.0, top_db=None) + 100) / 200).T        # (F_i, 80)
        k = int(mask[i].sum())
        assert k == len(ref) == 1 + len(w) // 256
        # Tolerance 1e-4 on the [0, 1] scale = 0.02 dB (measured: < 3e-6).
        np.testing.assert_allclose(mel[i, :k], ref, atol=1e-4)
        assert np.all(mel[i, k:] == 0)


def test_log_fbank_matches_librosa(waves):
    import librosa

    batch, lens = _padded(waves)
    feats, mask = F.log_fbank(batch, lens)
    feats, mask = np.asarray(feats), np.asarray(mask)
    for i, w in enumerate(waves):
        s = librosa.feature.melspectrogram(y=w, sr=SR, n_fft=512, win_length=400, hop_length=160, n_mels=80,
                                           fmax=8000)
        ref = np.log(np.maximum(s, 1e-6)).T
        k = int(mask[i].sum())
        assert k == len(ref) == 1 + len(w) // 160
        # Tolerance 1e-3 in natural-log units (measured: < 2e-5).
        np.testing.assert_allclose(feats[i, :k], ref, atol=1e-3)


def test_preprocess_highpass_and_dither():
    t = np.arange(SR) / SR
    low, high = np.sin(2 * np.pi * 5 * t), np.sin(2 * np.pi * 1000 * t)
    y_low, y_high = F.ad_preprocess(low), F.ad_preprocess(high)
    mid = slice(SR // 4, 3 * SR // 4)
    assert np.abs(y_low[mid]).max() < 0.01                     # 5 Hz: > 40 dB down
    np.testing.assert_allclose(y_high[mid], 0.96 * high[mid], atol=2e-3)   # 1 kHz: gain only
    silent = F.ad_preprocess(np.zeros(1000))
    assert 0 < np.abs(silent).max() <= 5e-7                    # dither, never exact zeros
    np.testing.assert_array_equal(silent, F.ad_preprocess(np.zeros(1000)))   # deterministic


def test_features_for_waves_matches_direct(waves):
    out = F.features_for_waves(waves, "fbank", preprocess=False)
    assert [o.shape for o in out] == [(1 + len(w) // 160, 80) for w in waves]
    direct, _ = F.log_fbank(waves[1][None])
    np.testing.assert_allclose(out[1], np.asarray(direct)[0], atol=1e-5)


def test_buckets_fix_shapes():
    lens = np.array([100, 31000, 33000, 64000, 70000, 5])
    batches = F._buckets(lens, bucket=32000, budget=128000)
    shapes = {(plen, rows) for plen, _, rows in batches}
    assert shapes == {(32000, 4), (64000, 2), (96000, 1)}
    assert sorted(np.concatenate([idx for _, idx, _ in batches])) == list(range(6))


@pytest.fixture()
def wav_corpus(tmp_path):
    """Three short WAV files (16 and 22.05 kHz) and one corrupt file, as a jaxdis Corpus."""
    import soundfile as sf

    from jaxdis.data.corpus import Corpus

    rng = np.random.default_rng(1)
    rows = []
    for i, (n, sr) in enumerate([(8000, 16000), (20000, 16000), (4410, 22050)]):
        p = tmp_path / f"u{i}.wav"
        sf.write(p, (0.1 * rng.standard_normal(n)).astype(np.float32), sr)
        rows.append({"utt_id": f"u{i}", "path": str(p), "speaker": f"s{i % 2}", "text": ""})
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    rows.append({"utt_id": "bad", "path": str(bad), "speaker": "s0", "text": ""})
    return Corpus(pd.DataFrame(rows), "tiny")


def test_corpus_features_cache(wav_corpus, tmp_path, monkeypatch):
    from jaxdis.data import corpus as corpus_mod
    from jaxdis.data.audio import load_audio

    calls = []
    real = corpus_mod.load_waveforms
    monkeypatch.setattr(corpus_mod, "load_waveforms", lambda *a, **k: calls.append(1) or real(*a, **k))
    cache = str(tmp_path / "cache")
    with pytest.raises(Exception, match="bad.wav"):
        F.corpus_features(wav_corpus, "ad_mel", cache_dir=cache, progress=False)
    with pytest.warns(UserWarning, match="1 of 4"):
        kept, feats = F.corpus_features(wav_corpus, "ad_mel", cache_dir=cache, skip_bad=True, progress=False,
                                        chunk_size=2)
    assert list(kept.table["utt_id"]) == ["u0", "u1", "u2"]
    assert [f.shape for f in feats] == [(1 + n // 256, 80) for n in (8000, 20000, 3200)]   # 22.05 kHz resampled
    direct = F.features_for_waves([load_audio(p) for p in kept.table["path"]], "ad_mel")
    for a, b in zip(feats, direct):
        np.testing.assert_allclose(a, b, atol=2.5e-4)         # float16 cache of [0, 1] values
    n_calls = len(calls)
    with pytest.warns(UserWarning, match="unreadable"):
        kept2, feats2 = F.corpus_features(wav_corpus, "ad_mel", cache_dir=cache, skip_bad=True, progress=False)
    assert len(calls) == n_calls                               # served from the cache
    assert list(kept2.table["utt_id"]) == ["u0", "u1", "u2"]
    for a, b in zip(feats, feats2):
        np.testing.assert_array_equal(a, b)
    cached = [d for d in os.listdir(os.path.join(cache, "features")) if ".tmp-" not in d]
    assert len(cached) == 1 and cached[0].startswith("ad_mel-")
    assert set(os.listdir(os.path.join(cache, "features", cached[0]))) == {"frames.npy", "offsets.npy",
                                                                            "utt_ids.json", "meta.json"}
