"""Reading audio: any file soundfile (else librosa/audioread) can decode, at any rate, mono or
multi-channel → mono float32 at one rate.

Bad input never passes silently: a missing, empty, unreadable, corrupt, zero-length,
non-finite or all-silent file raises ``AudioError`` naming the file and the reason.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

# A file whose largest deviation from its mean is below this (-80 dBFS, about 3 LSB of
# 16-bit audio) holds no usable signal: digital silence, dither or a constant offset.
SILENCE_PEAK = 1e-4
RESAMPLER = "soxr_hq"  # librosa's default high-quality band-limited resampler


class AudioError(ValueError):
    """A file that cannot be used as audio; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):  # picklable across process pools
        return (AudioError, (self.path, self.reason))


def _decode(path: str) -> tuple[np.ndarray, int]:
    """(samples (N, channels) float32, sample rate), by soundfile, else librosa."""
    import soundfile as sf

    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
        return data, int(sr)
    except Exception as sf_err:  # noqa: BLE001 - any decoder failure is reported below
        try:
            import librosa

            with warnings.catch_warnings():  # librosa warns when it falls back to audioread
                warnings.simplefilter("ignore")
                data, sr = librosa.load(path, sr=None, mono=False)
            return np.atleast_2d(data).T.astype(np.float32), int(sr)  # (N, channels)
        except Exception:  # noqa: BLE001
            reason = getattr(sf_err, "error_string", None) or f"{type(sf_err).__name__}: {sf_err}"
            raise AudioError(path, f"unreadable or corrupt audio ({reason})") from None


def read_audio(path: str) -> tuple[np.ndarray, int]:
    """(mono float32 samples, native sample rate), channels averaged; checks as load_audio."""
    path = str(path)
    if not os.path.exists(path):
        raise AudioError(path, "file not found")
    if os.path.isdir(path):
        raise AudioError(path, "is a directory, not an audio file")
    if os.path.getsize(path) == 0:
        raise AudioError(path, "empty file (0 bytes)")
    data, sr = _decode(path)                        # (N, C)
    if data.shape[0] == 0 or data.size == 0:
        raise AudioError(path, "zero-length audio (no samples)")
    mono = data.mean(axis=1)                        # (N,)
    if not np.isfinite(mono).all():
        raise AudioError(path, "contains NaN or infinite samples")
    if np.abs(mono - mono.mean()).max() < SILENCE_PEAK:
        raise AudioError(path, f"all silent (peak below {20 * np.log10(SILENCE_PEAK):.0f} dBFS)")
    return mono, sr


def load_audio(path: str, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 samples at `sample_rate`: channels averaged, soxr high-quality resampling.

    Raises AudioError (naming the file) for missing, empty, corrupt or all-silent files.
    """
    mono, sr = read_audio(path)
    if sr != sample_rate:
        import librosa

        mono = librosa.resample(mono, orig_sr=sr, target_sr=sample_rate, res_type=RESAMPLER)
    return np.ascontiguousarray(mono, dtype=np.float32)
