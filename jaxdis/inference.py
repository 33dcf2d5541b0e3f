"""Embedding audio with a trained model: the API for people, not for the trainer.

    from jaxdis.inference import Encoder
    enc = Encoder("runs/autodecompose")
    emb = enc.embed_files(["a.wav", "b.flac"])   # {"speaker": (2, 128), "content": (2, 128), ...}
"""

from __future__ import annotations

import numpy as np


class Encoder:
    """A trained jaxdis workdir, ready to embed any audio (any format, rate, channels)."""

    def __init__(self, workdir: str):
        from jaxdis.train import restore

        self.config, self.method, self.params, self.model_state = restore(workdir)
        self.sample_rate = int(self.config.data.get("sample_rate", 16000))

    def embed_waveforms(self, waves: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Mono float waveforms at ``self.sample_rate`` → {encoder: (N, d)}."""
        return self.method.embed_waves(self.params, self.model_state, [np.asarray(w, np.float32) for w in waves])

    def embed_files(self, paths: list[str]) -> dict[str, np.ndarray]:
        """Audio files → {encoder: (N, d)}; a bad file raises AudioError naming it."""
        from jaxdis.data.audio import load_audio

        return self.embed_waveforms([load_audio(p, self.sample_rate) for p in paths])
