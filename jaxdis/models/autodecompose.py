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

Initialisation follows Keras (Glorot-uniform kernels, zero biases). BatchNorm matches
Keras (momentum 0.99, epsilon 1e-3); its statistics live in the
``batch_stats`` collection: ``train=True`` normalises with batch statistics and needs
``mutable=["batch_stats"]``, ``train=False`` uses the running averages. LSTMs match
Keras too (gates i, f, g, o; Glorot-uniform input kernel, orthogonal recurrent kernel,
forget-gate bias 1) and run as scans; the input projection of all time steps is one
matmul outside the scan, so each step does only h @ W_hh.

Speed (same numbers either way, tested): ``lstm_impl="scan"`` (default) runs the
recurrence as a ``lax.scan`` with a hand-written backward pass that keeps the per-step
gate activations and computes dW_hh as one matmul over all steps after the reverse scan
(autodiff of a scan accumulates it step by step); ``lstm_impl="rnn"`` is the plain
``flax.linen.RNN`` cell. On CPU (``canonical_dots``, default: when JAX's backend is the
CPU) every matmul's backward uses explicitly transposed, row-major operands, and the
convolutions' forward pass is K shifted matmuls: XLA's CPU backend hands only such
"canonical" f32 dots to its fast GEMM library (YNNPACK) and runs transposed dots and f32
convolutions with slower generic kernels.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdis.models.matmul import canonical_dot_general, row_major_t

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


def _on_cpu() -> bool:
    return jax.default_backend() == "cpu"


def _transpose(a: jax.Array, materialise: bool) -> jax.Array:
    """aᵀ of a 2-D array; `materialise` stores it row-major behind an optimization barrier,
    so XLA cannot fold the transpose back into the consuming dot."""
    return row_major_t(a) if materialise else a.T


_CONTRACT_LAST = (((1,), (1,)), ((), ()))                                     # a (M, K) · b (N, K) → (M, N)


def _lstm_forward(gx, w, unroll, canonical):
    """gx (T, B, 4H) input gate pre-activations, w (H, 4H) → (hs, cs, acts), float32 state.

    With `canonical` (CPU) the per-step matmul is h · (wᵀ)ᵀ with wᵀ stored once: XLA:CPU
    then runs it with its generic kernel, which beats the GEMM library (that repacks the
    weights at every call) on these (B, H) × (H, 4H) products inside a loop.
    """
    t, b, g4 = gx.shape
    h0 = jnp.zeros((b, g4 // 4), jnp.float32)
    wt = _transpose(w, True) if canonical else None                            # (4H, H)

    def recurrent(h):
        h = h.astype(w.dtype)
        return jax.lax.dot_general(h, wt, _CONTRACT_LAST) if canonical else jnp.dot(h, w)

    def step(carry, g):
        c, h = carry
        z = g.astype(jnp.float32) + recurrent(h).astype(jnp.float32)          # (B, 4H)
        i, f, gg, o = jnp.split(z, 4, axis=-1)
        i, f, gg, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(gg), jax.nn.sigmoid(o)
        c = f * c + i * gg
        h = o * jnp.tanh(c)
        return (c, h), (h, c, jnp.concatenate([i, f, gg, o], axis=-1))

    _, (hs, cs, acts) = jax.lax.scan(step, (h0, h0), gx, unroll=unroll)
    return hs, cs, acts                                                        # (T, B, H), (T, B, H), (T, B, 4H)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def lstm_scan(gx, w, unroll: int = 1, canonical: bool = False):
    """LSTM recurrence from zero state: gx (T, B, 4H) (gates i, f, g, o), w (H, 4H) → hs (T, B, H).

    Its backward pass is written out: a reverse scan gives dz (T, B, 4H) (= d gx), then
    dW = Σ_t h_{t-1}ᵀ dz_t is one (H, T·B) @ (T·B, 4H) matmul.
    """
    return _lstm_forward(gx, w, unroll, canonical)[0].astype(gx.dtype)


def _lstm_scan_fwd(gx, w, unroll, canonical):
    hs, cs, acts = _lstm_forward(gx, w, unroll, canonical)
    return hs.astype(gx.dtype), (hs, cs, acts, w)


def _lstm_scan_bwd(unroll, canonical, res, dhs):
    hs, cs, acts, w = res
    t, b, h = hs.shape
    zeros = jnp.zeros((1, b, h), jnp.float32)
    c_prev = jnp.concatenate([zeros, cs[:-1]], axis=0)                       # (T, B, H)
    h_prev = jnp.concatenate([zeros, hs[:-1]], axis=0)

    def step(carry, xs):
        dh_next, dc_next = carry
        dh_out, c, cp, a = xs
        i, f, g, o = jnp.split(a, 4, axis=-1)
        tc = jnp.tanh(c)
        dh = dh_out.astype(jnp.float32) + dh_next
        dc = dc_next + dh * o * (1.0 - tc * tc)
        dz = jnp.concatenate([dc * g * i * (1.0 - i), dc * cp * f * (1.0 - f), dc * i * (1.0 - g * g),
                              dh * tc * o * (1.0 - o)], axis=-1)               # (B, 4H)
        dh_prev = jax.lax.dot_general(dz.astype(w.dtype), w, _CONTRACT_LAST).astype(jnp.float32)   # dz · wᵀ
        return (dh_prev, dc * f), dz

    z = jnp.zeros((b, h), jnp.float32)
    _, dz = jax.lax.scan(step, (z, z), (dhs, cs, c_prev, acts), reverse=True, unroll=unroll)
    dw = jnp.dot(_transpose(h_prev.reshape(t * b, h), canonical).astype(w.dtype),
                 dz.reshape(t * b, 4 * h).astype(w.dtype))                     # (H, 4H)
    return dz.astype(dhs.dtype), dw.astype(w.dtype)                         # d gx has the dtype of hs


lstm_scan.defvjp(_lstm_scan_fwd, _lstm_scan_bwd)


def _conv1d_lax(x, w):
    """'same' 1-D convolution: x (B, T, C), w (K, C, O) → (B, T, O)."""
    return jax.lax.conv_general_dilated(x, w, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"))


@jax.custom_vjp
def _conv1d_shifted(x, w):
    """``_conv1d_lax`` computed as K shifted canonical matmuls (faster forward on XLA:CPU,
    whose f32 convolutions do not go to its GEMM library); backward: the convolution's own."""
    b, t, c = x.shape
    k = w.shape[0]
    xp = jnp.pad(x, ((0, 0), ((k - 1) // 2, k // 2), (0, 0)))                  # (B, T + K - 1, C)
    y = sum(jnp.dot(xp[:, j:j + t].reshape(b * t, c), w[j]) for j in range(k))  # (B·T, O)
    # One materialised output: otherwise XLA fuses the K-term sum into every consumer.
    return jax.lax.optimization_barrier(y.reshape(b, t, w.shape[-1]))


def _conv1d_shifted_fwd(x, w):
    return _conv1d_shifted(x, w), (x, w)


def _conv1d_shifted_bwd(res, g):
    x, w = res
    return jax.vjp(_conv1d_lax, x, w)[1](g)


_conv1d_shifted.defvjp(_conv1d_shifted_fwd, _conv1d_shifted_bwd)


class _Conv1D(nn.Module):
    """Conv1D(features, kernel, padding "same") on (B, T, C), Keras' Glorot-uniform init."""

    features: int
    kernel: int = 5
    canonical: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        w = self.param("kernel", nn.initializers.glorot_uniform(), (self.kernel, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        x, w, bias = x.astype(self.dtype), w.astype(self.dtype), bias.astype(self.dtype)
        return (_conv1d_shifted if self.canonical else _conv1d_lax)(x, w) + bias   # (B, T, O)


class _ScanRecurrence(nn.Module):
    """The recurrence of ``LSTM`` as one ``lstm_scan``; same parameter as the RNN cell."""

    features: int
    unroll: int = 1
    canonical: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, gx):                                                    # (T, B, 4H)
        w = self.param("recurrent_kernel", nn.initializers.orthogonal(), (self.features, 4 * self.features))
        return lstm_scan(gx, w.astype(self.dtype), self.unroll, self.canonical)   # (T, B, H)


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
    """A unidirectional LSTM returning sequences: (B, T, C) → (B, T, H), or (T, B, C) →
    (T, B, H) with ``time_major`` (stacks stay time-major: no transposes between layers).

    impl "scan" (custom backward, faster) or "rnn" (``flax.linen.RNN``): same parameters,
    same outputs and gradients. canonical_dots None: on when the backend is the CPU.
    """

    features: int
    unroll: int = 1
    impl: str = "scan"
    canonical_dots: bool | None = None
    time_major: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        canonical = _on_cpu() if self.canonical_dots is None else self.canonical_dots
        if not self.time_major:
            x = jnp.swapaxes(x, 0, 1)                                          # (T, B, C)
        gx = nn.Dense(4 * self.features, kernel_init=nn.initializers.glorot_uniform(), bias_init=_unit_forget_bias,
                      dtype=self.dtype, dot_general=canonical_dot_general if canonical else None,
                      name="input")(x)                                        # (T, B, 4H)
        if self.impl == "scan":
            hs = _ScanRecurrence(self.features, self.unroll, canonical, self.dtype, name="recurrence")(gx)
        elif self.impl == "rnn":
            cell = _LSTMRecurrence(self.features, dtype=self.dtype, name="recurrence")
            hs = nn.RNN(cell, unroll=self.unroll, time_major=True)(gx)
        else:
            raise ValueError(f"unknown LSTM impl {self.impl!r}; use 'scan' or 'rnn'")
        return hs if self.time_major else jnp.swapaxes(hs, 0, 1)              # (T, B, H) / (B, T, H)


class _ConvBNR(nn.Module):
    features: int
    kernel: int = 5
    canonical: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        x = _Conv1D(self.features, self.kernel, self.canonical, self.dtype, name="Conv_0")(x)   # (B, T, C)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3, dtype=self.dtype)(x)
        return nn.relu(x)


def _dense(features, canonical, dtype, name=None):
    """nn.Dense with Keras' Glorot-uniform kernel init."""
    return nn.Dense(features, dtype=dtype, kernel_init=nn.initializers.glorot_uniform(),
                    dot_general=canonical_dot_general if canonical else None, name=name)


class _DenseBNR(nn.Module):
    features: int
    canonical: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        x = _dense(self.features, self.canonical, self.dtype)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3, dtype=self.dtype)(x)
        return nn.relu(x)


class _Stack(nn.Module):
    """The layer sizes Encoder and Decoder share (Encoder's defaults; Decoder overrides some)."""

    variant: str = "large"
    dense: int = 512
    conv: int = 512
    conv_layers: int = 3
    lstm: int = 256
    lstm_layers: int = 3
    out: int = 128                       # output width: the code (Encoder), n_mels (Decoder)
    kernel: int = 5
    unroll: int = 1
    lstm_impl: str = "scan"
    canonical_dots: bool | None = None
    dtype: Any = jnp.float32

    def _canonical(self) -> bool:
        return _on_cpu() if self.canonical_dots is None else self.canonical_dots

    def _trunk(self, x, train: bool, canonical: bool, out_name: str):
        """The conv and/or LSTM stack, then the output projection (B, T, out), float32.

        Called inside the subclasses' compact ``__call__``, so its layers are named under the
        caller (``_ConvBNR_i``, ``LSTM_i``, ``out_name``) as the Keras import expects. The LSTM
        stack runs time-major, and so does the projection after it."""
        if self.variant in ("conv", "large"):
            for _ in range(self.conv_layers):
                x = _ConvBNR(self.conv, self.kernel, canonical, self.dtype)(x, train)   # (B, T, conv)
        time_major = self.variant in ("lstm", "large")
        if time_major:
            x = jnp.swapaxes(x, 0, 1)                                          # (T, B, C)
            for _ in range(self.lstm_layers):
                x = LSTM(self.lstm, self.unroll, self.lstm_impl, canonical, True, dtype=self.dtype)(x)
        x = _dense(self.out, canonical, self.dtype, out_name)(x)
        return (jnp.swapaxes(x, 0, 1) if time_major else x).astype(jnp.float32)   # (B, T, out)


class Encoder(_Stack):
    """Mel frames (B, T, n_mels) → per-frame codes (B, T, out)."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        canonical = self._canonical()
        x = x.astype(self.dtype)
        if self.variant == "dense":
            x = _DenseBNR(self.dense, canonical, dtype=self.dtype)(x, train)
        return self._trunk(x, train, canonical, "embed")


class Decoder(_Stack):
    """Concatenated codes (B, T, 2·code) → mel frames (B, T, out = n_mels)."""

    dense: int = 1024
    conv_layers: int = 2
    lstm: int = 512
    lstm_layers: int = 2
    out: int = 80

    @nn.compact
    def __call__(self, z, train: bool = False):
        canonical = self._canonical()
        x = z.astype(self.dtype)
        if self.variant == "dense":
            x = _dense(self.dense, canonical, self.dtype, "Dense_0")(x)        # linear, as in the notebook
        return self._trunk(x, train, canonical, "out")


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
    lstm_impl: str = "scan"              # "scan" (custom backward) or "rnn" (flax.linen.RNN); same numbers
    canonical_dots: bool | None = None   # CPU-friendly matmul backward; None: when the backend is the CPU
    dtype: Any = jnp.float32             # computation dtype (bfloat16 on accelerators); params float32
    pool_speaker: bool = False           # decoder gets the crop's mean speaker code at every frame

    def _encoder(self, name):
        return Encoder(self.encoder_variant, self.enc_dense, self.enc_conv, self.enc_conv_layers, self.enc_lstm,
                       self.enc_lstm_layers, self.code, self.kernel, self.unroll, self.lstm_impl,
                       self.canonical_dots, self.dtype, name=name)

    def setup(self):
        for v in (self.encoder_variant, self.decoder_variant):
            if v not in VARIANTS:
                raise ValueError(f"unknown Autodecompose variant {v!r}; known: {VARIANTS}")
        self.speaker_encoder = self._encoder("speaker_encoder")
        self.content_encoder = self._encoder("content_encoder")
        self.decoder = Decoder(self.decoder_variant, self.dec_dense, self.dec_conv, self.dec_conv_layers,
                               self.dec_lstm, self.dec_lstm_layers, self.n_mels, self.kernel, self.unroll,
                               self.lstm_impl, self.canonical_dots, self.dtype, name="decoder")

    def __call__(self, x_voice_view, x_content_view, train: bool = False):
        s = self.speaker_encoder(x_voice_view, train)                          # (B, T, code)
        c = self.content_encoder(x_content_view, train)                        # (B, T, code)
        recon = self.decode(s, c, train)                                       # (B, T, n_mels)
        return recon, {"speaker": s, "content": c}

    def decode(self, s, c, train: bool = False):
        """Decoder on per-frame codes (B, T, code) × 2 → mel (B, T, n_mels). With
        ``pool_speaker`` every frame gets the crop's mean speaker code: one voice vector per
        crop, so the decoder cannot use per-frame detail left in the scrambled view."""
        if self.pool_speaker:
            s = jnp.broadcast_to(time_mean(s)[:, None, :], s.shape)
        return self.decoder(jnp.concatenate([s, c], axis=-1), train)

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
