"""Reading audio: any file soundfile or librosa can decode → mono float32 at one rate.

Bad input never passes silently: an empty, unreadable, corrupt, non-finite or all-silent
file raises ``AudioError`` naming the file and the reason.
"""

from __future__ import annotations

import os

import numpy as np

# A file whose loudest sample is below this (-80 dBFS) is treated as all silence.
SILENCE_PEAK = 1e-4


class AudioError(ValueError):
    """A file that cannot be used as audio; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _decode(path: str) -> tuple[np.ndarray, int]:
    """(samples (N, channels) float32, sample rate), by soundfile, else librosa/audioread."""
    import soundfile as sf

    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
        return data, int(sr)
    except Exception as sf_err:  # noqa: BLE001 - any decoder failure is reported below
        try:
            import warnings

            import librosa

            with warnings.catch_warnings():  # librosa warns about its audioread fallback
                warnings.simplefilter("ignore")
                data, sr = librosa.load(path, sr=None, mono=False)
            data = np.atleast_2d(data).T.astype(np.float32)  # (N, channels)
            return data, int(sr)
        except Exception:  # noqa: BLE001
            raise AudioError(path, f"unreadable or corrupt audio ({type(sf_err).__name__}: {sf_err})") from None


def load_audio(path: str, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 samples at `sample_rate` (channels averaged, high-quality resampling)."""
    path = str(path)
    if not os.path.exists(path):
        raise AudioError(path, "file not found")
    if os.path.getsize(path) == 0:
        raise AudioError(path, "empty file (0 bytes)")
    data, sr = _decode(path)
    mono = data.mean(axis=1) if data.ndim == 2 else data
    if mono.size == 0:
        raise AudioError(path, "no audio samples")
    if not np.isfinite(mono).all():
        raise AudioError(path, "contains NaN or infinite samples")
    if np.abs(mono).max() < SILENCE_PEAK:
        raise AudioError(path, "all silent (peak below -80 dBFS)")
    if sr != sample_rate:
        import librosa

        mono = librosa.resample(mono, orig_sr=sr, target_sr=sample_rate, res_type="soxr_hq")
    return np.ascontiguousarray(mono, dtype=np.float32)
