"""Autodecompose (Bonyadi et al.): a speaker encoder E_s, a content encoder E_c and a
decoder that reconstructs a mel crop from both codes.

Architectures follow the paper (section V) and the official Keras notebook, which fixes
what the paper leaves open: Conv1D kernel 5 with "same" padding, BatchNorm + ReLU after
each convolution ("BNR"), stacked LSTMs returning sequences, codes per frame.

  encoder  dense: Dense(512) + BNR                          → Dense(128)   (linear "embd128")
           conv:  3 × [Conv1D(512, 5) + BNR]                → Dense(128)
           lstm:  3 × LSTM(256)                             → Dense(128)
           large: 3 × [Conv1D(512, 5) + BNR], 3 × LSTM(256) → Dense(128)
  decoder  input: concat(speaker codes, content codes) (B, T, 256)
           dense: Dense(1024) (linear, as in the notebook)   → Dense(80)
           conv:  2 × [Conv1D(512, 5) + BNR]                → Dense(80)
           lstm:  2 × LSTM(512)                             → Dense(80)
           large: 2 × [Conv1D(512, 5) + BNR], 2 × LSTM(512) → Dense(80)

Both encoders have the same architecture and separate weights. Codes are per frame,
(B, T, 128); a crop's (or an utterance's) embedding is the time mean of its codes over
real frames (``time_mean``); the notebook flattened the (T, 128) codes for its t-SNE
instead, which ties the embedding to the crop length.

BatchNorm matches Keras (momentum 0.99, epsilon 1e-3); its statistics live in the
``batch_stats`` collection: ``train=True`` normalises with batch statistics and needs
``mutable=["batch_stats"]``, ``train=False`` uses the running averages. LSTMs match
Keras too (gates i, f, g, o; Glorot-uniform input kernel, orthogonal recurrent kernel,
forget-gate bias 1) and run as ``flax.linen.RNN`` scans; the input projection of all
time steps is one matmul outside the scan, so each step does only h @ W_hh.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["LSTM", "Encoder", "Decoder", "AutodecomposeModel", "make_model", "time_mean",
           "VARIANTS", "PAPER_SIZES", "TINY_SIZES"]

VARIANTS = ("dense", "conv", "lstm", "large")

PAPER_SIZES = dict(
    enc_dense=512, enc_conv=512, enc_conv_layers=3, enc_lstm=256, enc_lstm_layers=3, code=128,
    dec_dense=1024, dec_conv=512, dec_conv_layers=2, dec_lstm=512, dec_lstm_layers=2,
    kernel=5, n_mels=80,
)
TINY_SIZES = dict(
    enc_dense=16, enc_conv=16, enc_conv_layers=2, enc_lstm=8, enc_lstm_layers=2, code=8,
    dec_dense=16, dec_conv=16, dec_conv_layers=1, dec_lstm=16, dec_lstm_layers=1,
    kernel=5, n_mels=80,
)


def _unit_forget_bias(key, shape, dtype=jnp.float32):
    """Zeros except the forget-gate quarter, which is 1 (Keras' unit_forget_bias)."""
    h = shape[-1] // 4
    return jnp.zeros(shape, dtype).at[..., h:2 * h].set(1.0)


class _LSTMRecurrence(nn.RNNCellBase):
    """One LSTM step given precomputed input gate pre-activations gx (B, 4H)."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, carry, gx):
        c, h = carry                                                           # (B, H) each, float32
        w = self.param("recurrent_kernel", nn.initializers.orthogonal(), (self.features, 4 * self.features))
        z = gx.astype(jnp.float32) + jnp.dot(h.astype(self.dtype), w.astype(self.dtype)).astype(jnp.float32)
        i, f, g, o = jnp.split(z, 4, axis=-1)                                  # (B, H) each
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h.astype(self.dtype)

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        shape = tuple(input_shape[:-1]) + (self.features,)
        return jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32)

    @property
    def num_feature_axes(self) -> int:
        return 1


class LSTM(nn.Module):
    """A unidirectional LSTM returning sequences: (B, T, C) → (B, T, H)."""

    features: int
    unroll: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        gx = nn.Dense(4 * self.features, kernel_init=nn.initializers.glorot_uniform(),
                      bias_init=_unit_forget_bias, dtype=self.dtype, name="input")(x)   # (B, T, 4H)
        cell = _LSTMRecurrence(self.features, dtype=self.dtype, name="recurrence")
        return nn.RNN(cell, unroll=self.unroll)(gx)                          # (B, T, H)


class _ConvBNR(nn.Module):
    features: int
    kernel: int = 5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Conv(self.features, (self.kernel,), padding="SAME", dtype=self.dtype)(x)   # (B, T, C)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3, dtype=self.dtype)(x)
        return nn.relu(x)


class _DenseBNR(nn.Module):
    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Dense(self.features, dtype=self.dtype)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3, dtype=self.dtype)(x)
        return nn.relu(x)


class Encoder(nn.Module):
    """Mel frames (B, T, n_mels) → per-frame codes (B, T, code)."""

    variant: str = "large"
    dense: int = 512
    conv: int = 512
    conv_layers: int = 3
    lstm: int = 256
    lstm_layers: int = 3
    code: int = 128
    kernel: int = 5
    unroll: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.astype(self.dtype)
        if self.variant == "dense":
            x = _DenseBNR(self.dense, dtype=self.dtype)(x, train)
        if self.variant in ("conv", "large"):
            for _ in range(self.conv_layers):
                x = _ConvBNR(self.conv, self.kernel, dtype=self.dtype)(x, train)    # (B, T, conv)
        if self.variant in ("lstm", "large"):
            for _ in range(self.lstm_layers):
                x = LSTM(self.lstm, unroll=self.unroll, dtype=self.dtype)(x)      # (B, T, lstm)
        return nn.Dense(self.code, dtype=self.dtype, name="embed")(x).astype(jnp.float32)   # (B, T, code)


class Decoder(nn.Module):
    """Concatenated codes (B, T, 2·code) → mel frames (B, T, n_mels)."""

    variant: str = "large"
    dense: int = 1024
    conv: int = 512
    conv_layers: int = 2
    lstm: int = 512
    lstm_layers: int = 2
    n_mels: int = 80
    kernel: int = 5
    unroll: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z, train: bool = False):
        x = z.astype(self.dtype)
        if self.variant == "dense":
            x = nn.Dense(self.dense, dtype=self.dtype)(x)                      # linear, as in the notebook
        if self.variant in ("conv", "large"):
            for _ in range(self.conv_layers):
                x = _ConvBNR(self.conv, self.kernel, dtype=self.dtype)(x, train)
        if self.variant in ("lstm", "large"):
            for _ in range(self.lstm_layers):
                x = LSTM(self.lstm, unroll=self.unroll, dtype=self.dtype)(x)
        return nn.Dense(self.n_mels, dtype=self.dtype, name="out")(x).astype(jnp.float32)   # (B, T, n_mels)


class AutodecomposeModel(nn.Module):
    """E_s, E_c and the decoder. Build it with ``make_model``.

    ``__call__(x_voice_view, x_content_view, train)`` → (recon (B, T, n_mels),
    {"speaker": (B, T, code), "content": (B, T, code)}): the speaker encoder sees the view
    that keeps the voice (``augment.keep_voice``), the content encoder the view that keeps
    the content (``augment.keep_content``); the loss compares recon with the original crop.
    """

    encoder_variant: str = "large"
    decoder_variant: str = "large"
    enc_dense: int = 512
    enc_conv: int = 512
    enc_conv_layers: int = 3
    enc_lstm: int = 256
    enc_lstm_layers: int = 3
    code: int = 128
    dec_dense: int = 1024
    dec_conv: int = 512
    dec_conv_layers: int = 2
    dec_lstm: int = 512
    dec_lstm_layers: int = 2
    kernel: int = 5
    n_mels: int = 80
    unroll: int = 1                      # LSTM scan unroll (speed only; same numbers)
    dtype: Any = jnp.float32             # computation dtype (bfloat16 on accelerators); params float32

    def _encoder(self, name):
        return Encoder(self.encoder_variant, self.enc_dense, self.enc_conv, self.enc_conv_layers, self.enc_lstm,
                       self.enc_lstm_layers, self.code, self.kernel, self.unroll, self.dtype, name=name)

    def setup(self):
        for v in (self.encoder_variant, self.decoder_variant):
            if v not in VARIANTS:
                raise ValueError(f"unknown Autodecompose variant {v!r}; known: {VARIANTS}")
        self.speaker_encoder = self._encoder("speaker_encoder")
        self.content_encoder = self._encoder("content_encoder")
        self.decoder = Decoder(self.decoder_variant, self.dec_dense, self.dec_conv, self.dec_conv_layers,
                               self.dec_lstm, self.dec_lstm_layers, self.n_mels, self.kernel, self.unroll,
                               self.dtype, name="decoder")

    def __call__(self, x_voice_view, x_content_view, train: bool = False):
        s = self.speaker_encoder(x_voice_view, train)                          # (B, T, code)
        c = self.content_encoder(x_content_view, train)                        # (B, T, code)
        recon = self.decoder(jnp.concatenate([s, c], axis=-1), train)          # (B, T, n_mels)
        return recon, {"speaker": s, "content": c}

    def encode_speaker(self, x, train: bool = False):
        """E_s: mel (B, T, n_mels) → per-frame speaker codes (B, T, code)."""
        return self.speaker_encoder(x, train)

    def encode_content(self, x, train: bool = False):
        """E_c: mel (B, T, n_mels) → per-frame content codes (B, T, code)."""
        return self.content_encoder(x, train)


def make_model(variant: str = "large", size: str = "paper", decoder: str | None = None, **overrides) -> AutodecomposeModel:
    """An Autodecompose model: `variant` ∈ dense, conv, lstm, large names the encoder and
    (unless `decoder` is given) the decoder; `size` "paper" or "tiny" (for tests) picks the
    widths, and any field of ``AutodecomposeModel`` can be overridden, e.g. the paper's
    overfitting model: ``make_model("large", enc_lstm=1024, code=1024, dec_conv=1024, dec_lstm=1024)``.
    """
    sizes = {"paper": PAPER_SIZES, "tiny": TINY_SIZES}
    if size not in sizes:
        raise ValueError(f"unknown size {size!r}; known: {sorted(sizes)}")
    fields = {f.name for f in dataclasses.fields(AutodecomposeModel)}
    unknown = set(overrides) - fields
    if unknown:
        raise TypeError(f"unknown AutodecomposeModel fields: {sorted(unknown)}")
    kw = {**sizes[size], **overrides}
    return AutodecomposeModel(encoder_variant=variant, decoder_variant=decoder or variant, **kw)


def time_mean(codes: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Embedding of a crop or utterance: the mean of its per-frame codes over real frames.
    codes (..., T, D), mask (..., T) bool or None → (..., D)."""
    if mask is None:
        return codes.mean(axis=-2)
    m = mask.astype(codes.dtype)[..., None]                                    # (..., T, 1)
    return (codes * m).sum(-2) / jnp.maximum(m.sum(-2), 1.0)
