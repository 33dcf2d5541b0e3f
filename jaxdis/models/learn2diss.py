"""Learn2Diss dual encoder (§3.2): frozen feature extractor f, frame encoder g, utterance
encoder h and the layer aggregations that the MI term compares (eq. 9).

    input ─ f (conv or fbank [+ N frozen transformer layers]) ─ X'
    X' ─ g: M trainable transformer layers ─ y¹ … y^M, cluster logits        ȳ = Σ_l y^l
    X' (or the log-mel) ─ h: ECAPA-TDNN ─ z¹ … z^{L−1} (frames), z^L (pooled)   z̄_t = z^L + Σ_l A^l z^l_t

f and g are one FrameEncoder whose first N layers are frozen (``frozen_layers=N``), so a
HuBERT/WavLM checkpoint loads into both at once. h reads either X' (``utt_input=
"features"``: the paper) or the 80-d log-mel at 100 Hz (``"fbank"``: what the ECAPA
method trains on, so an ECAPA run can initialise it); its frame outputs are then averaged
in groups of ``fbank_stack`` to the encoder's frame rate, so z^l_t and y_t are aligned.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdis.methods.ecapa import mean_normalize  # ECAPA's sentence mean norm, as its own method trains with
from jaxdis.models.ecapa import Ecapa, EcapaConfig
from jaxdis.models.transformer import FrameEncoder, FrameEncoderConfig

Array = jax.Array
UTT_INPUTS = ("fbank", "features")


class FramePredictor(nn.Module):
    """g: FrameEncoder + linear head over the K clusters. Parameter names ("encoder",
    "head") match jaxdis.methods.transformer.MaskedPredictor, so a transformer run loads."""

    cfg: FrameEncoderConfig
    num_clusters: int

    @nn.compact
    def __call__(self, x, mask, span, train: bool):
        last, aux = FrameEncoder(self.cfg, name="encoder")(x, mask, span_mask=span, train=train)
        logits = nn.Dense(self.num_clusters, dtype=jnp.dtype(self.cfg.dtype), name="head")(last)
        return logits.astype(jnp.float32), last, aux                        # (B, T, K), (B, T, D), aux


class Aggregate(nn.Module):
    """Eq. 9, utterance side: z̄_t = z^L + Σ_l A^l z^l_t, A^l a learned d^l → d^L map."""

    @nn.compact
    def __call__(self, emb: Array, frames: list[Array]) -> Array:
        out = emb[:, None, :]                                                 # (B, 1, d^L)
        for l, z in enumerate(frames):
            out = out + nn.Dense(emb.shape[-1], use_bias=False, name=f"A_{l + 1}")(z.astype(jnp.float32))
        return out                                                            # (B, T, d^L)


def pool_frames(z: Array, mask: Array, factor: int) -> tuple[Array, Array]:
    """(B, F, C) frames and (B, F) mask → (B, F // factor, C) means of each group of
    `factor` frames over its real frames, and the mask of groups with any real frame."""
    if factor == 1:
        return z, mask
    b, f, c = z.shape
    t = f // factor
    m = mask[:, :t * factor].reshape(b, t, factor).astype(jnp.float32)
    s = jnp.sum(z[:, :t * factor].reshape(b, t, factor, c) * m[..., None], 2)
    return s / jnp.maximum(m.sum(-1, keepdims=True), 1.0), m.sum(-1) > 0


class Learn2Diss(nn.Module):
    """f + g + h + A. ``__call__`` is the training pass over one crop (g on the whole
    crop, h on its two halves as the two non-overlapping views); ``encode`` the eval pass
    over whole utterances."""

    frame_cfg: FrameEncoderConfig
    utt_cfg: EcapaConfig
    num_clusters: int
    utt_input: str = "fbank"

    def setup(self):
        if self.utt_input not in UTT_INPUTS:
            raise ValueError(f"unknown utt_input {self.utt_input!r}; use one of {UTT_INPUTS}")
        if self.utt_input == "fbank" and self.frame_cfg.frontend != "fbank":
            raise ValueError("utt_input='fbank' needs the fbank frontend; use utt_input='features'")
        self.frame = FramePredictor(self.frame_cfg, self.num_clusters)
        self.utt = Ecapa(self.utt_cfg)
        self.agg = Aggregate()

    @property
    def frozen(self) -> int:
        return max(self.frame_cfg.frozen_layers or 0, 0)

    def _utt_input(self, x: Array, mask: Array, aux: dict) -> tuple[Array, Array, int]:
        """(h's input (B, F, C), its mask (B, F), frames per encoder frame). X' is the
        frozen extractor's output: conv/fbank features (N = 0) or hidden state N."""
        if self.utt_input == "fbank":
            return x.astype(jnp.float32), mask, self.frame_cfg.fbank_stack
        n = self.frozen
        xp = aux["features"] if n == 0 else aux["hidden_states"][n]
        return jax.lax.stop_gradient(xp.astype(jnp.float32)), aux["mask"], 1

    def _frame_outputs(self, x, mask, span, train):
        logits, last, aux = self.frame(x, mask, span, train)
        ybar = sum(aux["hidden_states"][self.frozen + 1:])                   # (B, T, D), Σ over the M trainable layers
        return logits, last, ybar.astype(jnp.float32), aux

    def _utterance(self, u: Array, umask: Array, factor: int, train: bool) -> tuple[Array, Array, Array]:
        """h on (views·B, F, C): (z^L (·, d^L), z̄ (·, T, d^L), z̄'s mask (·, T))."""
        emb, frames = self.utt(mean_normalize(u, umask), umask, train=train)
        pooled = [pool_frames(z, umask, factor)[0] for z in frames]
        zmask = pool_frames(frames[0], umask, factor)[1]
        return emb, self.agg(emb, pooled), zmask

    def __call__(self, x: Array, mask: Array, span: Array, train: bool = True) -> dict[str, Array]:
        """x (B, F, ·) one crop; mask (B, F); span (B, T) masked frames of g's input.

        Returns logits, last (B, T, ·); ybar (B, T/2, D) and zbar (B, T/2, d^L) of the first
        half with its mask ``mi_mask``; emb (2B, d^L): view 1 rows then view 2 rows."""
        logits, last, ybar, aux = self._frame_outputs(x, mask, span, train)
        u, umask, factor = self._utt_input(x, mask, aux)
        half = (u.shape[1] // (2 * factor)) * factor                          # input frames per view
        views = jnp.concatenate([u[:, :half], u[:, half:2 * half]], 0)       # (2B, F/2, C)
        vmask = jnp.concatenate([umask[:, :half], umask[:, half:2 * half]], 0)
        emb, zbar, zmask = self._utterance(views, vmask, factor, train)
        b, t = x.shape[0], half // factor
        mi_mask = aux["mask"][:, :t] & zmask[:b]
        return {"logits": logits, "last": last, "frame_mask": aux["mask"], "ybar": ybar[:, :t],
                "zbar": zbar[:b], "mi_mask": mi_mask, "emb": emb}

    def encode(self, x: Array, mask: Array) -> dict[str, Array]:
        """Eval pass over whole utterances: mean-pooled ȳ ("frame"), y^M ("frame_last"),
        z̄ ("utt_frames") and the embedding z^L ("utt"), each (B, ·)."""
        _, last, ybar, aux = self._frame_outputs(x, mask, None, False)
        u, umask, factor = self._utt_input(x, mask, aux)
        emb, zbar, zmask = self._utterance(u, umask, factor, False)

        def pool(v, m):
            w = m.astype(jnp.float32)[..., None]
            return jnp.sum(v.astype(jnp.float32) * w, 1) / jnp.maximum(w.sum(1), 1.0)

        return {"frame": pool(ybar, aux["mask"]), "frame_last": pool(last, aux["mask"]),
                "utt": emb, "utt_frames": pool(zbar, zmask)}
