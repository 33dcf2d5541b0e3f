"""load_audio: any rate and channel count → 16 kHz mono float32; bad files raise AudioError naming them."""

import pickle

import numpy as np
import pytest
import soundfile as sf

from jaxdis.data.audio import AudioError, load_audio, read_audio


def _sine(sr, seconds=0.5, freq=440.0, amp=0.4):
    t = np.arange(int(sr * seconds)) / sr
    return amp * np.sin(2 * np.pi * freq * t)


def _peak_hz(x, sr):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * sr / len(x)


def test_22k_mono_wav_resamples_to_16k(tmp_path):
    path = tmp_path / "mono.wav"
    sf.write(path, _sine(22050), 22050, subtype="PCM_16")
    x = load_audio(str(path))
    assert x.dtype == np.float32 and x.ndim == 1
    assert len(x) == 8000                                     # 0.5 s at 16 kHz
    assert _peak_hz(x, 16000) == pytest.approx(440, abs=2)     # pitch preserved by the resampler
    assert np.abs(x[1000:-1000]).max() == pytest.approx(0.4, abs=0.01)


def test_44k_stereo_flac_averages_channels(tmp_path):
    path = tmp_path / "stereo.flac"
    left = _sine(44100)
    sf.write(path, np.stack([left, 0.5 * left], 1), 44100)
    x = load_audio(str(path), sample_rate=16000)
    assert x.ndim == 1 and len(x) == 8000
    assert np.abs(x[1000:-1000]).max() == pytest.approx(0.75 * 0.4, abs=0.01)   # (x + x/2) / 2
    mono, sr = read_audio(str(path))
    assert sr == 44100 and len(mono) == 22050


def test_same_rate_is_untouched(tmp_path):
    path = tmp_path / "f.wav"
    x0 = _sine(16000).astype(np.float32)
    sf.write(path, x0, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(str(path)), x0)


def test_quiet_speech_is_not_silence(tmp_path):
    path = tmp_path / "quiet.wav"
    sf.write(path, _sine(16000, amp=1e-3), 16000, subtype="PCM_24")   # -60 dBFS
    assert np.abs(load_audio(str(path))).max() == pytest.approx(1e-3, rel=0.05)


def _bad_files(d):
    (d / "empty.wav").write_bytes(b"")
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 8)
    (d / "text.flac").write_text("this is not audio at all")
    sf.write(d / "zero_length.wav", np.zeros(0), 16000)
    sf.write(d / "silent.wav", np.zeros(16000), 16000)
    sf.write(d / "dc_only.wav", np.full(16000, 0.2), 16000)
    sf.write(d / "dither.wav", np.random.default_rng(0).integers(-1, 2, 16000) / 32768, 16000, subtype="PCM_16")
    nan = _sine(16000).astype(np.float32)
    nan[100] = np.nan
    sf.write(d / "nan.wav", nan, 16000, subtype="FLOAT")
    (d / "folder.wav").mkdir()
    return {"empty.wav": "empty", "corrupt.wav": "corrupt", "text.flac": "corrupt", "zero_length.wav": "zero-length",
            "silent.wav": "silent", "dc_only.wav": "silent", "dither.wav": "silent", "nan.wav": "NaN",
            "folder.wav": "directory", "missing.wav": "not found"}


def test_bad_files_raise_naming_the_file_and_reason(tmp_path):
    for name, reason in _bad_files(tmp_path).items():
        with pytest.raises(AudioError, match=reason) as err:
            load_audio(str(tmp_path / name))
        assert err.value.path == str(tmp_path / name) and str(tmp_path / name) in str(err.value)


def test_audio_error_pickles():
    err = pickle.loads(pickle.dumps(AudioError("/a/b.wav", "all silent")))
    assert (err.path, err.reason, str(err)) == ("/a/b.wav", "all silent", "/a/b.wav: all silent")
