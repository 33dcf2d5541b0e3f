"""Frame-level transformer encoder in the HuBERT / wav2vec 2.0 / WavLM layout.

waveform (B, S) ─ conv feature extractor ─ (B, T, C) ─ feature projection ─ (B, T, D)
  ─ [mask embedding] ─ convolutional positional embedding ─ N transformer layers ─ y^1 … y^N

or, with ``frontend="fbank"``, 80-d log-mel frames (100 Hz) stacked in pairs (50 Hz, the
HuBERT frame rate) take the place of the conv features.

Parameter names follow transformers' module names (``feature_extractor/conv_layers_0/conv``,
``encoder/layers_3/attention/q_proj`` …) so ``jaxdis.convert.transformers_hubert`` maps a
PyTorch state dict one-to-one. The variants:

- ``feat_norm="group"``: wav2vec2/HuBERT-base conv stack (GroupNorm after the first conv
  only, one group per channel); ``"layer"``: LayerNorm after every conv (large models).
- ``stable_layer_norm``: pre-LN layers and a final LayerNorm (large models); otherwise
  post-LN with a LayerNorm after the positional embedding (base models).
- ``rel_pos_bias``: WavLM's gated relative position bias (buckets embedded once, in layer 0,
  and gated per layer and head by the layer's input).

Attention goes through ``jax.nn.dot_product_attention`` (cuDNN flash attention on a GPU
in bf16/fp16, XLA elsewhere); ``dtype`` is the compute dtype, ``param_dtype`` the storage.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdis.models.matmul import canonical_dot_general, canonical_matmul

Array = jax.Array
Dtype = Any

BASE_CONV = dict(conv_dim=(512,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2))

# Size presets; any field can still be overridden (FrameEncoderConfig.from_name("base", layers=6)).
SIZES: dict[str, dict[str, Any]] = {
    # Unit tests: a few thousand parameters, compiles in seconds.
    "tiny": dict(hidden=32, layers=2, heads=4, mlp=64, conv_dim=(32, 32, 32), conv_kernel=(10, 3, 3),
                 conv_stride=(5, 2, 2), pos_conv_kernel=16, pos_conv_groups=4),
    # CPU experiments: 4 × 256-d layers.
    "small": dict(hidden=256, layers=4, heads=4, mlp=1024, pos_conv_kernel=32, pos_conv_groups=16, **BASE_CONV),
    # HuBERT / wav2vec 2.0 / WavLM Base.
    "base": dict(hidden=768, layers=12, heads=12, mlp=3072, pos_conv_kernel=128, pos_conv_groups=16, **BASE_CONV),
    # Large: layer-norm conv stack with biases, pre-LN layers.
    "large": dict(hidden=1024, layers=24, heads=16, mlp=4096, pos_conv_kernel=128, pos_conv_groups=16,
                  feat_norm="layer", conv_bias=True, stable_layer_norm=True, **BASE_CONV),
}


@dataclasses.dataclass(frozen=True)
class FrameEncoderConfig:
    """Hyperparameters of FrameEncoder (hashable, so it can be a Linen field)."""

    hidden: int = 768                    # model width D
    layers: int = 12                     # transformer layers
    heads: int = 12
    mlp: int = 3072                      # feed-forward width
    # Conv waveform feature extractor: 16 kHz → 50 Hz with the base layout.
    conv_dim: tuple[int, ...] = BASE_CONV["conv_dim"]
    conv_kernel: tuple[int, ...] = BASE_CONV["conv_kernel"]
    conv_stride: tuple[int, ...] = BASE_CONV["conv_stride"]
    conv_bias: bool = False
    feat_norm: str = "group"             # "group" (base) | "layer" (large)
    feat_proj_norm: bool = True          # LayerNorm before the feature projection (wav2vec2, WavLM; most HuBERTs)
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    stable_layer_norm: bool = False      # pre-LN layers + final LayerNorm
    rel_pos_bias: bool = False           # WavLM gated relative position bias
    num_buckets: int = 320
    max_distance: int = 800
    layer_norm_eps: float = 1e-5
    # Input: "waveform" (B, S) samples, or "fbank" (B, F, n_mels) log-mel frames.
    frontend: str = "waveform"
    n_mels: int = 80
    fbank_stack: int = 2                 # fbank frames per encoder frame (100 Hz → 50 Hz)
    fbank_norm: str = "utterance"        # "utterance": per-bin mean/variance over each row's real frames | "none"
    # Regularisation (training only).
    dropout: float = 0.1                 # after projections, positional embedding, attention and FFN
    activation_dropout: float = 0.0      # inside the FFN
    feat_dropout: float = 0.0            # on the projected features
    # Freezing: None trains everything; N >= 0 freezes the conv extractor and, for N > 0, the
    # projection, positional embedding and first N layers too (Learn2Diss's feature extractor).
    frozen_layers: int | None = None
    dtype: str = "float32"               # compute dtype: "float32" | "bfloat16"
    param_dtype: str = "float32"
    attention: str = "auto"              # "auto" (cuDNN when it applies) | "xla" | "cudnn"
    # Matmul form: "xla" (XLA's dots and convolutions) | "canonical": every dense/conv matmul and
    # its backward as row-major (M, K) @ (K, N) dots (see canonical_matmul). Measured on a 2-core
    # CPU: canonical was no faster for fbank input and 1.9x slower for the waveform extractor.
    matmuls: str = "xla"

    @classmethod
    def from_name(cls, name: str, **overrides) -> FrameEncoderConfig:
        if name not in SIZES:
            raise ValueError(f"unknown size {name!r}; known: {', '.join(SIZES)}")
        return cls(**{**SIZES[name], **overrides})

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def feature_dim(self) -> int:
        """Width of the features before the projection."""
        return self.n_mels * self.fbank_stack if self.frontend == "fbank" else self.conv_dim[-1]

    @property
    def hop(self) -> int:
        """Input samples (waveform) or fbank frames per encoder frame."""
        return self.fbank_stack if self.frontend == "fbank" else int(np.prod(self.conv_stride))

    @property
    def receptive_field(self) -> int:
        """Input samples (waveform) or fbank frames seen by one encoder frame."""
        if self.frontend == "fbank":
            return self.fbank_stack
        rf, jump = 1, 1
        for k, s in zip(self.conv_kernel, self.conv_stride):
            rf, jump = rf + (k - 1) * jump, jump * s
        return rf

    def num_frames(self, length: int | Array) -> int | Array:
        """Encoder frames for `length` input samples (waveform) or fbank frames."""
        if self.frontend == "fbank":
            return length // self.fbank_stack
        for k, s in zip(self.conv_kernel, self.conv_stride):
            length = (length - k) // s + 1
        return length

    def replace(self, **changes) -> FrameEncoderConfig:
        return dataclasses.replace(self, **changes)

    @property
    def canonical(self) -> bool:
        """Whether matmuls take the canonical form (``matmuls``)."""
        return self.matmuls == "canonical"


def _dt(name: str) -> Dtype:
    return jnp.dtype(name)


# --------------------------------------------------------------------------- CPU matmuls
# XLA's CPU backend sends only "canonical" dots, row-major (M, K) @ (K, N), to its fast GEMM
# library; the transposed dots of a backward pass and convolutions run on slower generic
# kernels. canonical_matmul (jaxdis/models/matmul.py) materialises the transposes its backward
# needs, and the strided convolutions of the waveform extractor become one im2col matmul each.
# Same parameters, same sums (up to float32 reordering).

def dense(cfg: FrameEncoderConfig, features: int, name: str) -> nn.Dense:
    """nn.Dense in the compute/parameter dtypes of `cfg`, canonical matmuls where `cfg.canonical`."""
    kw = {"dot_general": canonical_dot_general} if cfg.canonical else {}
    return nn.Dense(features, dtype=_dt(cfg.dtype), param_dtype=_dt(cfg.param_dtype), name=name, **kw)


def im2col(x: Array, kernel: int, stride: int) -> Array:
    """(B, S, C) → (B, T, K·C) VALID conv windows, T = (S − K) // stride + 1, taps outer.

    Built from a stride-sized reshape (no gathers): window t starts at block t of
    (S // stride, stride · C) rows, and spans ⌈K / stride⌉ consecutive blocks."""
    b, s, c = x.shape
    t = (s - kernel) // stride + 1
    blocks = -(-kernel // stride)
    need = (t + blocks - 1) * stride
    x = jnp.pad(x, ((0, 0), (0, max(need - s, 0)), (0, 0)))[:, :need].reshape(b, t + blocks - 1, stride * c)
    parts = [x[:, i:i + t, :min(stride, kernel - i * stride) * c] for i in range(blocks)]
    return parts[0] if blocks == 1 else jnp.concatenate(parts, -1)              # (B, T, K·C)


def strided_conv(x: Array, w: Array, stride: int, canonical: bool) -> Array:
    """VALID 1-D convolution x (B, S, C) * w (K, C, O) → (B, T, O): XLA's convolution, or
    (canonical) one im2col matmul."""
    if not canonical:
        return jax.lax.conv_general_dilated(x, w, (stride,), "VALID", dimension_numbers=("NWC", "WIO", "NWC"))
    k, c, o = w.shape
    cols = im2col(x, k, stride)                                               # (B, T, K·C)
    b, t, _ = cols.shape
    return canonical_matmul(cols.reshape(b * t, k * c), w.reshape(k * c, o)).reshape(b, t, o)


def frame_mask(cfg: FrameEncoderConfig, input_mask: Array | None, batch: int, frames: int) -> Array:
    """(B, T) True on real frames: the first num_frames(length) of each row (right padding)."""
    if input_mask is None:
        return jnp.ones((batch, frames), bool)
    lengths = cfg.num_frames(input_mask.astype(jnp.int32).sum(-1))       # (B,)
    return jnp.arange(frames)[None, :] < lengths[:, None]


# --------------------------------------------------------------------------- feature extractor

class ConvLayer(nn.Module):
    """Conv1d → (GroupNorm | LayerNorm | nothing) → GELU, as in transformers' *ConvLayer."""

    features: int
    kernel: int
    stride: int
    norm: str          # "group" | "layer" | "none"
    use_bias: bool
    dtype: Dtype
    param_dtype: Dtype
    canonical: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:                                  # (B, S, C_in)
        x = Conv1d(self.features, self.kernel, self.stride, self.use_bias, self.dtype, self.param_dtype,
                   self.canonical, name="conv")(x)                            # (B, S', C)
        if self.norm == "group":  # one group per channel: each channel normalised over time
            x = nn.GroupNorm(num_groups=self.features, epsilon=1e-5, dtype=self.dtype,
                             param_dtype=self.param_dtype, name="layer_norm")(x)
        elif self.norm == "layer":
            x = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, param_dtype=self.param_dtype, name="layer_norm")(x)
        return nn.gelu(x, approximate=False)


class Conv1d(nn.Module):
    """Strided VALID conv with nn.Conv's parameters (``kernel`` (K, C_in, C_out), ``bias``)."""

    features: int
    kernel: int
    stride: int
    use_bias: bool
    dtype: Dtype
    param_dtype: Dtype
    canonical: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:                                  # (B, S, C_in)
        w = self.param("kernel", nn.initializers.he_normal(), (self.kernel, x.shape[-1], self.features),
                       self.param_dtype)
        x = x.astype(self.dtype)
        y = strided_conv(x, w.astype(self.dtype), self.stride, self.canonical)  # (B, S', C_out)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype).astype(self.dtype)
        return y


class FeatureExtractor(nn.Module):
    """Waveform (B, S) → conv features (B, T, C); 320× downsampling with the base layout."""

    cfg: FrameEncoderConfig

    @nn.compact
    def __call__(self, wav: Array) -> Array:
        c = self.cfg
        x = wav.astype(_dt(c.dtype))[..., None]                               # (B, S, 1)
        for i, (dim, k, s) in enumerate(zip(c.conv_dim, c.conv_kernel, c.conv_stride)):
            norm = "layer" if c.feat_norm == "layer" else ("group" if i == 0 else "none")
            x = ConvLayer(dim, k, s, norm, c.conv_bias, _dt(c.dtype), _dt(c.param_dtype), c.canonical,
                          name=f"conv_layers_{i}")(x)
        return x                                                              # (B, T, C)


class FeatureProjection(nn.Module):
    cfg: FrameEncoderConfig

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:                       # (B, T, C)
        c = self.cfg
        if c.feat_proj_norm:
            x = nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=_dt(c.dtype), param_dtype=_dt(c.param_dtype),
                             name="layer_norm")(x)
        x = dense(c, c.hidden, "projection")(x)
        return nn.Dropout(c.feat_dropout, deterministic=not train)(x)        # (B, T, D)


# --------------------------------------------------------------------------- encoder

class PositionalConv(nn.Module):
    """Grouped, weight-normalised conv over time + GELU: the relative positional embedding.

    Weight norm as transformers applies it (``dim=2``): w = g · v / ‖v‖ with one norm per
    kernel tap, taken over the input and output channels. Kernel 128 is even, so the
    'same' padding drops the last output frame.
    """

    cfg: FrameEncoderConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:                                    # (B, T, D)
        c = self.cfg
        k, g, d = c.pos_conv_kernel, c.pos_conv_groups, c.hidden
        std = 2.0 * math.sqrt(1.0 / (k * d))
        v = self.param("weight_v", nn.initializers.normal(std), (k, d // g, d), _dt(c.param_dtype))
        gain = self.param("weight_g", nn.initializers.constant(std * math.sqrt(d * d / g)), (k,), _dt(c.param_dtype))
        bias = self.param("bias", nn.initializers.zeros, (d,), _dt(c.param_dtype))
        v32 = v.astype(jnp.float32)
        w = v32 * (gain.astype(jnp.float32) / jnp.sqrt(jnp.sum(v32 ** 2, axis=(1, 2))))[:, None, None]
        pad = (k // 2, k // 2 - (1 - k % 2))
        y = jax.lax.conv_general_dilated(x, w.astype(x.dtype), (1,), [pad], dimension_numbers=("NWC", "WIO", "NWC"),
                                         feature_group_count=g)               # (B, T, D)
        return nn.gelu(y + bias.astype(y.dtype), approximate=False)


def relative_position_buckets(length: int, num_buckets: int, max_distance: int) -> np.ndarray:
    """(T, T) int bucket of the offset key − query, WavLM/T5 style: half the buckets per
    direction, exact below a quarter of them, logarithmic up to max_distance."""
    rel = np.arange(length)[None, :] - np.arange(length)[:, None]
    half = num_buckets // 2
    buckets = (rel > 0).astype(np.int64) * half
    rel = np.abs(rel)
    exact = half // 2
    with np.errstate(divide="ignore"):
        large = exact + (np.log(np.maximum(rel, 1) / exact) / math.log(max_distance / exact)
                         * (half - exact)).astype(np.int64)
    large = np.minimum(large, half - 1)
    return buckets + np.where(rel < exact, rel, large)


class Attention(nn.Module):
    """Multi-head self-attention with a key padding mask and, for WavLM, a gated relative bias."""

    cfg: FrameEncoderConfig
    has_rel_embed: bool = False     # WavLM: only the first layer owns the bucket embedding

    @nn.compact
    def __call__(self, x: Array, mask: Array, position_bias: Array | None) -> tuple[Array, Array | None]:
        c = self.cfg
        b, t, _ = x.shape
        proj = lambda name: dense(c, c.hidden, name)
        q = proj("q_proj")(x).reshape(b, t, c.heads, c.head_dim)            # (B, T, N, H)
        k = proj("k_proj")(x).reshape(b, t, c.heads, c.head_dim)
        v = proj("v_proj")(x).reshape(b, t, c.heads, c.head_dim)
        bias = None
        if c.rel_pos_bias:
            if position_bias is None:
                if not self.has_rel_embed:
                    raise ValueError("the first WavLM layer must own the relative position embedding")
                table = self.param("rel_attn_embed", nn.initializers.normal(1.0), (c.num_buckets, c.heads),
                                   _dt(c.param_dtype))
                buckets = relative_position_buckets(t, c.num_buckets, c.max_distance)
                position_bias = jnp.transpose(table[buckets], (2, 0, 1)).astype(jnp.float32)  # (N, T, T)
            # Gate from the layer input, per head: sigmoid of two sums of 4 projections.
            gp = nn.Dense(8, dtype=_dt(c.dtype), param_dtype=_dt(c.param_dtype), name="gru_rel_pos_linear")(
                x.reshape(b, t, c.heads, c.head_dim))                         # (B, T, N, 8)
            gate_a, gate_b = jnp.split(jax.nn.sigmoid(gp.reshape(b, t, c.heads, 2, 4).sum(-1).astype(jnp.float32)),
                                       2, axis=-1)                            # (B, T, N, 1) each
            const = self.param("gru_rel_pos_const", nn.initializers.ones, (c.heads,), _dt(c.param_dtype))
            gate = gate_a[..., 0] * (gate_b[..., 0] * const.astype(jnp.float32) - 1.0) + 2.0  # (B, T, N)
            bias = (jnp.transpose(gate, (0, 2, 1))[..., None] * position_bias[None]).astype(q.dtype)  # (B, N, T, T)
        out = attend(q, k, v, bias, mask, c.attention)                        # (B, T, N, H)
        out = proj("out_proj")(out.reshape(b, t, c.hidden))
        return out, position_bias


def attend(q: Array, k: Array, v: Array, bias: Array | None, mask: Array, impl: str = "auto") -> Array:
    """jax.nn.dot_product_attention over real keys only (right-padded rows).

    cuDNN's fused kernel takes the padding as sequence lengths and needs fp16/bf16 on a
    GPU; "auto" uses it there when there is no bias (WavLM's per-example gated bias, whose
    gradient cuDNN handles only in restricted shapes, stays on XLA), XLA otherwise."""
    use_cudnn = impl == "cudnn" or (impl == "auto" and bias is None and jax.default_backend() == "gpu"
                                    and q.dtype in (jnp.bfloat16, jnp.float16) and q.shape[-1] % 8 == 0)
    if use_cudnn:
        lengths = mask.astype(jnp.int32).sum(-1)
        try:
            return jax.nn.dot_product_attention(q, k, v, bias=bias, key_value_seq_lengths=lengths,
                                                implementation="cudnn")
        except Exception:  # unsupported shape/dtype for this cuDNN: fall back below
            if impl == "cudnn":
                raise
    return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask[:, None, None, :], implementation="xla")


class FeedForward(nn.Module):
    cfg: FrameEncoderConfig

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        c = self.cfg
        h = dense(c, c.mlp, "intermediate_dense")(x)
        h = nn.Dropout(c.activation_dropout, deterministic=not train)(nn.gelu(h, approximate=False))
        h = dense(c, c.hidden, "output_dense")(h)
        return nn.Dropout(c.dropout, deterministic=not train)(h)


class EncoderLayer(nn.Module):
    """Post-LN (base) or pre-LN (``stable_layer_norm``) transformer layer."""

    cfg: FrameEncoderConfig
    has_rel_embed: bool = False

    @nn.compact
    def __call__(self, x: Array, mask: Array, position_bias: Array | None, train: bool):
        c = self.cfg
        ln = lambda name: nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=_dt(c.dtype), param_dtype=_dt(c.param_dtype),
                                       name=name)
        attn = Attention(c, self.has_rel_embed, name="attention")
        drop = nn.Dropout(c.dropout, deterministic=not train)
        ff = FeedForward(c, name="feed_forward")
        if c.stable_layer_norm:
            h, position_bias = attn(ln("layer_norm")(x), mask, position_bias)
            x = x + drop(h)
            x = x + ff(ln("final_layer_norm")(x), train)
        else:
            h, position_bias = attn(x, mask, position_bias)
            x = ln("layer_norm")(x + drop(h))
            x = ln("final_layer_norm")(x + ff(x, train))
        return x, position_bias                                               # (B, T, D)


class FrameEncoder(nn.Module):
    """The whole encoder. Returns (last, aux):

    last: (B, T, D) final representation (after the final LayerNorm for pre-LN models).
    aux["hidden_states"]: tuple of L + 1 arrays (B, T, D): the input of layer 1 then each
      layer's output y^l, the same list transformers returns with ``output_hidden_states``.
    aux["mask"]: (B, T) bool, real frames. aux["features"]: (B, T, C) pre-projection features.
    """

    cfg: FrameEncoderConfig

    @nn.compact
    def __call__(self, x: Array, mask: Array | None = None, span_mask: Array | None = None,
                 train: bool = False) -> tuple[Array, dict[str, Any]]:
        """x: (B, S) waveform or (B, F, n_mels) fbank; mask: matching (B, S) / (B, F) bool of
        real samples/frames (None: all real); span_mask: (B, T) bool frames to replace by the
        learned mask embedding (at the input of the first trainable layer)."""
        c = self.cfg
        frozen = c.frozen_layers
        if c.frontend == "fbank":
            b, f, m = x.shape
            if c.fbank_norm == "utterance":
                x = normalize_frames(x, mask)
            t = f // c.fbank_stack
            feats = x[:, :t * c.fbank_stack].reshape(b, t, c.fbank_stack * m).astype(_dt(c.dtype))  # (B, T, C)
        else:
            feats = FeatureExtractor(c, name="feature_extractor")(x)          # (B, T, C)
        b, t, _ = feats.shape
        fmask = frame_mask(c, mask, b, t)                                     # (B, T)
        if frozen is not None and frozen >= 0:
            feats = jax.lax.stop_gradient(feats)
        h = FeatureProjection(c, name="feature_projection")(feats, train)     # (B, T, D)

        embed = None
        if span_mask is not None:
            embed = self.param("masked_spec_embed", nn.initializers.uniform(1.0), (c.hidden,), _dt(c.param_dtype))
        if span_mask is not None and not frozen:
            h = jnp.where(span_mask[..., None], embed.astype(h.dtype), h)

        h = jnp.where(fmask[..., None], h, 0)                                 # padded frames → 0 before the conv
        h = h + PositionalConv(c, name="encoder_pos_conv_embed")(h)
        if not c.stable_layer_norm:
            h = nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=_dt(c.dtype), param_dtype=_dt(c.param_dtype),
                             name="encoder_layer_norm")(h)
        h = nn.Dropout(c.dropout, deterministic=not train)(h)

        hidden = [h]
        position_bias = None
        for i in range(c.layers):
            h, position_bias = EncoderLayer(c, has_rel_embed=(i == 0), name=f"encoder_layers_{i}")(
                h, fmask, position_bias, train)
            hidden.append(h)
            if frozen and i + 1 == frozen:  # end of the frozen feature extractor: X'
                h = jax.lax.stop_gradient(h)
                if position_bias is not None:
                    position_bias = jax.lax.stop_gradient(position_bias)
                if span_mask is not None:
                    h = jnp.where(span_mask[..., None], embed.astype(h.dtype), h)
        last = hidden[-1]
        if c.stable_layer_norm:
            last = nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=_dt(c.dtype), param_dtype=_dt(c.param_dtype),
                                name="encoder_layer_norm")(last)
        return last, {"hidden_states": tuple(hidden), "mask": fmask, "features": feats}


def normalize_frames(x: Array, mask: Array | None) -> Array:
    """Per-row, per-bin mean and variance normalisation over the real frames (CMVN);
    padded frames become 0. x: (B, F, M), mask: (B, F) bool or None."""
    x = x.astype(jnp.float32)
    m = jnp.ones(x.shape[:2], jnp.float32) if mask is None else mask.astype(jnp.float32)
    n = jnp.maximum(m.sum(1), 1.0)[:, None, None]                             # (B, 1, 1)
    mean = jnp.sum(x * m[..., None], 1, keepdims=True) / n                    # (B, 1, M)
    var = jnp.sum(((x - mean) * m[..., None]) ** 2, 1, keepdims=True) / n
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * m[..., None]


def is_frozen_path(path: Sequence[str], cfg: FrameEncoderConfig) -> bool:
    """Whether the parameter at `path` (names from the FrameEncoder root) belongs to the
    frozen feature extractor of ``cfg.frozen_layers``."""
    n = cfg.frozen_layers
    if n is None or n < 0:
        return False
    top = path[0]
    if top == "feature_extractor":
        return True
    if n == 0:
        return False
    if top in ("feature_projection", "encoder_pos_conv_embed"):
        return True
    if top == "encoder_layer_norm":
        return not cfg.stable_layer_norm  # post-LN: the LayerNorm before layer 1; pre-LN: the final one
    if top.startswith("encoder_layers_"):
        return int(top.rsplit("_", 1)[1]) < n
    return False


def trainable_mask(params: Any, cfg: FrameEncoderConfig) -> Any:
    """Pytree of bools, False for frozen parameters (for optax.masked / multi_transform)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: not is_frozen_path([getattr(p, "key", str(p)) for p in path], cfg), params)


def param_count(params: Any) -> int:
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))


def train_flops_per_frame(cfg: FrameEncoderConfig, frames: int) -> float:
    """Analytic FLOPs of one training step per encoder frame (forward + backward = 3 ×
    forward; matmuls and convs only, 2 FLOPs per multiply-add), for MFU.

    frames: sequence length T (attention is quadratic in it). The conv extractor is
    counted per output frame of each conv layer at the base 320× rate."""
    d, m, t = cfg.hidden, cfg.mlp, frames
    per_layer = 2 * (4 * d * d + 2 * d * m) + 2 * 2 * t * d                   # projections + FFN + QK^T and AV
    fwd = cfg.layers * per_layer
    fwd += 2 * cfg.pos_conv_kernel * (d // cfg.pos_conv_groups) * d           # positional conv
    fwd += 2 * cfg.feature_dim * d                                            # projection
    if cfg.frontend == "waveform":
        # conv layer i runs at (total stride after i) / (total stride) of ... times the frame rate
        rate, c_in = float(np.prod(cfg.conv_stride)), 1
        for dim, k, s in zip(cfg.conv_dim, cfg.conv_kernel, cfg.conv_stride):
            rate /= s
            fwd += rate * 2 * k * c_in * dim
            c_in = dim
    return 3.0 * fwd
