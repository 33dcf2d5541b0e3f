"""ECAPA-TDNN utterance encoder (Desplanques et al. 2020) in speechbrain's layout.

fbank (B, T, 80) ─ TDNN k5 ─ z¹ ─ SE-Res2Block d2 ─ z² ─ SE-Res2Block d3 ─ z³ ─ SE-Res2Block d4 ─ z⁴
  ─ concat(z², z³, z⁴) ─ TDNN k1 (multi-layer feature aggregation) ─ z⁵
  ─ attentive statistics pooling (global context) ─ BN ─ linear ─ embedding (B, E)

Every TDNN block is conv → ReLU → BN, as in speechbrain (not the paper's figure); the
Res2Net block passes its first channel chunk straight through. Parameter names follow
speechbrain's module names (``blocks_1/res2net_block/blocks_0/conv``, ``asp/tdnn/norm``,
``asp_bn``, ``fc``) so ``jaxdis.convert.speechbrain_ecapa`` maps a state dict one-to-one.

Padding. ``mask`` (B, T) marks real frames; they must come first in each row (right
padding). Everything an utterance's embedding depends on is computed from its own frames:

- convolutions pad each utterance at its own ends ("same" padding). speechbrain pads with
  ``reflect``, so frame ``len - 1 + j`` is taken to be frame ``len - 1 - j`` of the same
  utterance, whatever the batch's padding holds; ``padding_mode="zeros"`` pads with zeros;
- block outputs are zeroed at padded frames, so nothing there leaks into later layers;
- SE squeeze, the global context and the attentive statistics average over real frames
  only, and the attention gives padded frames weight 0.

In eval mode an utterance's embedding is thus the same with any amount of padding and in
any batch (tests/test_ecapa.py). In train mode BatchNorm normalises with the statistics of
the current batch: here they are taken over the real frames only (Flax's masked
BatchNorm), so padding still does not change them, but the rest of the batch does, as
with any BatchNorm. speechbrain, by contrast, includes padded frames in its statistics
(and convolves across them). The running averages use the biased batch variance (torch
uses the unbiased one); this only matters in training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

SIZES: dict[str, dict[str, Any]] = {
    # Unit tests: compiles in seconds.
    "tiny": dict(channels=(32, 32, 32, 32, 96), attention_channels=16, se_channels=16, res2net_scale=4,
                 embed_dim=32),
    # CPU experiments on the built-in corpus.
    "small": dict(channels=(256, 256, 256, 256, 768), attention_channels=64, se_channels=64, embed_dim=192),
    # speechbrain's default ECAPA_TDNN(80, lin_neurons=192): C = 512.
    "c512": dict(channels=(512, 512, 512, 512, 1536)),
    # The VoxCeleb recipe's C = 1024.
    "c1024": dict(channels=(1024, 1024, 1024, 1024, 3072)),
    # Learn2Diss: d^l = 1024 for every frame layer, 256-d pooled output (L = 6 layers).
    "learn2diss": dict(channels=(1024, 1024, 1024, 1024, 1024), embed_dim=256),
}


@dataclasses.dataclass(frozen=True)
class EcapaConfig:
    """Hyperparameters (speechbrain's defaults; hashable so it can be a Linen field)."""

    input_dim: int = 80
    channels: tuple[int, ...] = (512, 512, 512, 512, 1536)   # first TDNN, SE-Res2Blocks, MFA
    kernel_sizes: tuple[int, ...] = (5, 3, 3, 3, 1)
    dilations: tuple[int, ...] = (1, 2, 3, 4, 1)
    attention_channels: int = 128
    res2net_scale: int = 8
    se_channels: int = 128
    global_context: bool = True
    embed_dim: int = 192
    padding_mode: str = "reflect"     # "reflect" (speechbrain) | "zeros"
    bn_momentum: float = 0.9          # Flax convention: torch's momentum 0.1
    bn_eps: float = 1e-5
    dtype: str = "float32"            # compute dtype of the convolutions ("bfloat16" on accelerators)

    def __post_init__(self):
        n = len(self.channels)
        if n < 3 or len(self.kernel_sizes) != n or len(self.dilations) != n:
            raise ValueError("channels, kernel_sizes and dilations need the same length (≥ 3)")
        if self.padding_mode not in ("reflect", "zeros"):
            raise ValueError(f"padding_mode must be 'reflect' or 'zeros', got {self.padding_mode!r}")
        for c in self.channels[1:-1]:
            if c % self.res2net_scale:
                raise ValueError(f"SE-Res2Block channels {c} do not split into {self.res2net_scale} chunks")

    @classmethod
    def from_name(cls, size: str = "c512", **overrides) -> EcapaConfig:
        if size not in SIZES:
            raise ValueError(f"unknown ECAPA size {size!r}; known: {sorted(SIZES)}")
        fields = {**SIZES[size], **overrides}
        for k in ("channels", "kernel_sizes", "dilations"):
            if k in fields:
                fields[k] = tuple(int(v) for v in fields[k])
        return cls(**fields)

    def replace(self, **changes) -> EcapaConfig:
        return dataclasses.replace(self, **changes)

    @property
    def frame_dims(self) -> tuple[int, ...]:
        """Widths d^l of the frame-level outputs z^1 … z^{L-1}."""
        return tuple(self.channels)


# --------------------------------------------------------------------------- padding helpers

def zero_padded(x: Array, valid: Array | None) -> Array:
    """x (B, T, C) with padded frames set to 0 (unchanged when there is no mask)."""
    return x if valid is None else jnp.where(valid[..., None], x, jnp.zeros((), x.dtype))


def pad_same(x: Array, lengths: Array | None, pad: int, mode: str) -> Array:
    """(B, T, C) → (B, T + 2·pad, C): "same" padding of each utterance at its own ends.

    reflect: frame len−1+j reads frame len−1−j (torch's reflect on the unpadded utterance),
    whatever the batch's padding holds; built from static shifts and selects, no gather.
    zeros: frames from len on are zero.
    """
    if pad == 0:
        return x
    b, t, _ = x.shape
    widths = ((0, 0), (pad, pad), (0, 0))
    if mode == "zeros":
        if lengths is not None:
            x = jnp.where((jnp.arange(t)[None, :] < lengths[:, None])[..., None], x, 0)
        return jnp.pad(x, widths)
    xp = jnp.pad(x, widths, mode="reflect")                                   # right for full rows
    if lengths is None:
        return xp
    pos = jnp.arange(t + 2 * pad) - pad                                       # frame index of each row
    for j in range(1, pad + 1):
        shifted = jnp.pad(xp, ((0, 0), (2 * j, 0), (0, 0)))[:, :t + 2 * pad]  # shifted[u] = xp[u − 2j]
        at = (pos[None, :] == lengths[:, None] - 1 + j)[..., None]            # (B, T + 2p, 1)
        xp = jnp.where(at, shifted, xp)
    return xp


def frame_weights(valid: Array | None, x: Array) -> Array:
    """(B, T, 1) weights averaging over the real frames of each row."""
    if valid is None:
        return jnp.full(x.shape[:2] + (1,), 1.0 / x.shape[1], x.dtype)
    w = valid.astype(x.dtype)[..., None]
    return w / jnp.maximum(jnp.sum(w, axis=1, keepdims=True), 1.0)


def masked_mean(x: Array, valid: Array | None) -> Array:
    """Mean over time of x (B, T, C) at real frames → (B, C)."""
    return jnp.sum(x * frame_weights(valid, x), axis=1)


def weighted_stats(x: Array, w: Array, eps: float = 1e-12) -> tuple[Array, Array]:
    """Mean and std over time of x (B, T, C) with weights w (B, T, C or 1) summing to 1,
    std = sqrt(max(Σ w (x − μ)², eps)) as speechbrain computes it."""
    mean = jnp.sum(w * x, axis=1)                                             # (B, C)
    var = jnp.sum(w * jnp.square(x - mean[:, None]), axis=1)
    return mean, jnp.sqrt(jnp.maximum(var, eps))


# --------------------------------------------------------------------------- layers

def _torch_uniform(fan_in_axes: Sequence[int]):
    """torch's default Conv1d init: U(±1/sqrt(fan_in))."""
    def init(key, shape, dtype=jnp.float32):
        fan_in = 1
        for a in fan_in_axes:
            fan_in *= shape[a]
        bound = 1.0 / jnp.sqrt(fan_in)
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


class Conv1d(nn.Module):
    """Dilated time convolution of already padded (B, T + 2p, C_in) → (B, T, C_out);
    kernel (k, C_in, C_out). 1×1 convolutions are plain matmuls.

    ``context`` (B, C_ctx), 1×1 only: per-utterance channels that the input would repeat
    at every frame (ASP's global mean and std). The kernel then has C_in + C_ctx input
    channels, as if they were concatenated, but their product is computed once per
    utterance instead of once per frame."""

    features: int
    kernel_size: int = 1
    dilation: int = 1
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x: Array, context: Array | None = None) -> Array:
        cin = x.shape[-1] + (0 if context is None else context.shape[-1])
        kernel = self.param("kernel", _torch_uniform((0, 1)), (self.kernel_size, cin, self.features))
        fan_in = cin * self.kernel_size
        bias = self.param("bias", lambda k, s: jax.random.uniform(k, s, jnp.float32, -1, 1) / jnp.sqrt(fan_in),
                          (self.features,))
        dt = jnp.dtype(self.dtype)
        x, kernel = x.astype(dt), kernel.astype(dt)
        if self.kernel_size == 1:
            y = x @ kernel[0, :x.shape[-1]]
            if context is not None:
                y = y + (context.astype(dt) @ kernel[0, x.shape[-1]:])[:, None]          # (B, 1, C_out)
        else:
            if context is not None:
                raise ValueError("context channels need a 1×1 convolution")
            y = jax.lax.conv_general_dilated(x, kernel, (1,), "VALID", rhs_dilation=(self.dilation,),
                                             dimension_numbers=("NWC", "WIO", "NWC"))
        return y + bias.astype(dt)


class TDNNBlock(nn.Module):
    """conv → ReLU → BN (speechbrain's order), padded frames zeroed on output."""

    cfg: EcapaConfig
    features: int
    kernel_size: int = 1
    dilation: int = 1

    @nn.compact
    def __call__(self, x: Array, valid: Array | None, lengths: Array | None, train: bool,
                 context: Array | None = None) -> Array:
        pad = self.dilation * (self.kernel_size - 1) // 2
        x = pad_same(x, lengths, pad, self.cfg.padding_mode)                  # (B, T + 2p, C_in)
        x = Conv1d(self.features, self.kernel_size, self.dilation, self.cfg.dtype, name="conv")(x, context)
        x = nn.relu(x).astype(jnp.float32)
        x = nn.BatchNorm(use_running_average=not train, momentum=self.cfg.bn_momentum, epsilon=self.cfg.bn_eps,
                         name="norm")(x, mask=None if valid is None else valid[..., None])  # (B, T, C_out)
        return zero_padded(x, valid)


class Res2NetBlock(nn.Module):
    """Res2Net: chunk 0 passes straight through; chunk i ≥ 1 goes through TDNN i−1 after
    adding the previous chunk's output (hierarchical residual connections)."""

    cfg: EcapaConfig
    kernel_size: int
    dilation: int

    @nn.compact
    def __call__(self, x, valid, lengths, train):
        chunks = jnp.split(x, self.cfg.res2net_scale, axis=-1)                 # scale × (B, T, C/scale)
        width = chunks[0].shape[-1]
        out, y = [chunks[0]], None
        for i, c in enumerate(chunks[1:]):
            y = TDNNBlock(self.cfg, width, self.kernel_size, self.dilation, name=f"blocks_{i}")(
                c if y is None else c + y, valid, lengths, train)
            out.append(y)
        return jnp.concatenate(out, axis=-1)                                  # (B, T, C)


class SEBlock(nn.Module):
    """Squeeze (mean over real frames) and excitation (bottleneck, sigmoid channel gates)."""

    cfg: EcapaConfig

    @nn.compact
    def __call__(self, x, valid):
        s = masked_mean(x, valid)[:, None]                                    # (B, 1, C)
        s = nn.relu(Conv1d(self.cfg.se_channels, dtype=self.cfg.dtype, name="conv1")(s))
        s = nn.sigmoid(Conv1d(x.shape[-1], dtype=self.cfg.dtype, name="conv2")(s)).astype(x.dtype)
        return s * x


class SERes2NetBlock(nn.Module):
    """TDNN k1 → Res2Net (dilated) → TDNN k1 → SE, plus the (projected) input."""

    cfg: EcapaConfig
    features: int
    kernel_size: int
    dilation: int

    @nn.compact
    def __call__(self, x, valid, lengths, train):
        residual = x
        if x.shape[-1] != self.features:
            residual = Conv1d(self.features, dtype=self.cfg.dtype, name="shortcut")(x).astype(jnp.float32)
        x = TDNNBlock(self.cfg, self.features, name="tdnn1")(x, valid, lengths, train)
        x = Res2NetBlock(self.cfg, self.kernel_size, self.dilation, name="res2net_block")(x, valid, lengths, train)
        x = TDNNBlock(self.cfg, self.features, name="tdnn2")(x, valid, lengths, train)
        x = SEBlock(self.cfg, name="se_block")(x, valid)
        return zero_padded(x + residual, valid)


class AttentiveStatsPool(nn.Module):
    """Channel-wise attentive mean and std over real frames, the attention seeing each
    frame beside the utterance's global mean and std (global context) → (B, 2C)."""

    cfg: EcapaConfig

    @nn.compact
    def __call__(self, x, valid, train):
        c = x.shape[-1]
        w = frame_weights(valid, x)                                           # (B, T, 1)
        context = None
        if self.cfg.global_context:                                           # [x, mean, std] at every frame
            context = jnp.concatenate(weighted_stats(x, w), axis=-1)          # (B, 2C)
        a = TDNNBlock(self.cfg, self.cfg.attention_channels, name="tdnn")(x, valid, None, train, context)
        a = Conv1d(c, dtype=self.cfg.dtype, name="conv")(jnp.tanh(a)).astype(jnp.float32)  # (B, T, C)
        if valid is not None:
            a = jnp.where(valid[..., None], a, -jnp.inf)
        attn = jax.nn.softmax(a, axis=1)
        mean, std = weighted_stats(x, attn)
        return jnp.concatenate([mean, std], axis=-1)                          # (B, 2C)


class Ecapa(nn.Module):
    """ECAPA-TDNN: (feats (B, T, F), mask (B, T)) → (embedding (B, E), [z¹ … z^{L−1}]).

    The frame-level outputs z^l (B, T, d^l), padded frames zeroed, are the first TDNN, each
    SE-Res2Block and the aggregation layer: what Learn2Diss eq. 9 projects and sums."""

    cfg: EcapaConfig

    @nn.compact
    def __call__(self, x: Array, mask: Array | None = None, train: bool = False) -> tuple[Array, list[Array]]:
        cfg = self.cfg
        x = x.astype(jnp.float32)
        valid = None if mask is None else mask.astype(bool)                   # (B, T)
        lengths = None if mask is None else jnp.sum(valid, axis=1).astype(jnp.int32)
        x = zero_padded(x, valid)
        ch, ks, ds = cfg.channels, cfg.kernel_sizes, cfg.dilations
        x = TDNNBlock(cfg, ch[0], ks[0], ds[0], name="blocks_0")(x, valid, lengths, train)
        frames = [x]                                                          # z¹ (B, T, C₀)
        for i in range(1, len(ch) - 1):
            x = SERes2NetBlock(cfg, ch[i], ks[i], ds[i], name=f"blocks_{i}")(x, valid, lengths, train)
            frames.append(x)                                                  # (B, T, C_i)
        x = jnp.concatenate(frames[1:], axis=-1)                              # (B, T, ΣC_i)
        x = TDNNBlock(cfg, ch[-1], ks[-1], ds[-1], name="mfa")(x, valid, lengths, train)
        frames.append(x)                                                      # (B, T, C_mfa)
        pooled = AttentiveStatsPool(cfg, name="asp")(x, valid, train)          # (B, 2 C_mfa)
        pooled = nn.BatchNorm(use_running_average=not train, momentum=cfg.bn_momentum, epsilon=cfg.bn_eps,
                              name="asp_bn")(pooled)
        emb = Conv1d(cfg.embed_dim, dtype=cfg.dtype, name="fc")(pooled[:, None])[:, 0]
        return emb.astype(jnp.float32), frames                                # (B, E), L−1 × (B, T, d^l)
