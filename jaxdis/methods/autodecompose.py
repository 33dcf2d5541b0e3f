"""Autodecompose (paper eq. 2): rebuild a mel crop from E_s(A(x)) and E_c(Ā(x)).

A keeps the voice and scrambles the content (time pivot inversions + time masks); Ā keeps
the content and changes the voice (frequency stretch + frequency masks). The decoder
must rebuild the original crop from the two codes, so the speaker encoder E_s can only
contribute what A keeps — the voice — and E_c what Ā keeps — the content.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdis import augment
from jaxdis.data.batching import CropSource
from jaxdis.data.features import corpus_features, features_for_waves
from jaxdis.methods.base import Method
from jaxdis.methods.common import corpus_splits
from jaxdis.models.autodecompose import AutodecomposeModel, make_model, time_mean

HOP_SECONDS = 256 / 16000  # one Autodecompose mel frame


class AutodecomposeMethod(Method):
    name = "autodecompose"

    def __init__(self, config):
        super().__init__(config)
        m = config.model
        self.model = make_model(m.variant, size=m.size, pool_speaker=bool(m.get("pool_speaker", False)),
                                **dict(m.get("sizes", {})))
        self.crop = int(m.crop_frames)

    # ---- training -----------------------------------------------------------------
    def data(self) -> CropSource:
        train, _ = corpus_splits(self.config)
        _, feats = corpus_features(train, "ad_mel", cache_dir=self.config.get("cache_dir") or None,
                                   skip_bad=self.config.data.skip_bad_audio)
        return CropSource(feats, self.crop, self.config.train.batch_size, self.config.seed)

    def init(self, rng, batch):
        x = jnp.asarray(batch["x"], jnp.float32)
        variables = self.model.init({"params": rng}, x, x, train=False)
        return variables["params"], {"batch_stats": variables.get("batch_stats", {})}

    def loss(self, params, model_state, batch, rng):
        x = batch["x"]                                                   # (B, T, 80)
        target, voice_view, content_view = augment.make_views(rng, x, use_base=self.config.model.base_augment,
                                                                 channel_db=float(self.config.model.get("channel_db", 0.0)))
        (recon, _), updates = self.model.apply({"params": params, **model_state}, voice_view, content_view,
                                               train=True, mutable=["batch_stats"])
        mask = batch["mask"][..., None].astype(recon.dtype)               # (B, T, 1): real frames
        mse = jnp.sum(mask * (recon - target) ** 2) / (jnp.sum(mask) * recon.shape[-1])
        return mse, ({"mse": mse}, {"batch_stats": updates["batch_stats"]})

    # ---- embeddings -----------------------------------------------------------------
    def _crops(self, feats: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Non-overlapping crops of every utterance (a short one becomes one zero-padded
        crop), their frame masks, and the utterance each crop came from."""
        crops, masks, owner = [], [], []
        for i, f in enumerate(feats):
            for c in range(max(len(f) // self.crop, 1)):
                piece = f[c * self.crop:(c + 1) * self.crop]
                mask = np.arange(self.crop) < len(piece)
                crops.append(np.pad(piece, ((0, self.crop - len(piece)), (0, 0))))
                masks.append(mask)
                owner.append(i)
        return np.stack(crops).astype(np.float32), np.stack(masks), np.array(owner)

    def embed_features(self, params, model_state, feats: list[np.ndarray], batch_size: int = 256) -> dict[str, np.ndarray]:
        """Utterance embeddings: the mean over an utterance's crops of each encoder's
        crop embedding; plus the raw-mel baseline (time mean and std of the mel)."""
        crops, masks, owner = self._crops(feats)
        variables = {"params": params, **model_state}

        @jax.jit
        def encode(x, mask):
            s = self.model.apply(variables, x, method=AutodecomposeModel.encode_speaker)
            c = self.model.apply(variables, x, method=AutodecomposeModel.encode_content)
            return time_mean(s, mask), time_mean(c, mask)

        outs = {"speaker": [], "content": []}
        for lo in range(0, len(crops), batch_size):
            chunk, mask = crops[lo:lo + batch_size], masks[lo:lo + batch_size]
            pad = batch_size - len(chunk)  # one compiled shape for every chunk
            spk, con = jax.device_get(encode(np.pad(chunk, ((0, pad), (0, 0), (0, 0))), np.pad(mask, ((0, pad), (0, 0)))))
            outs["speaker"].append(spk[:len(chunk)])
            outs["content"].append(con[:len(chunk)])
        n = len(feats)
        counts = np.bincount(owner, minlength=n)[:, None]
        result = {}
        for name, parts in outs.items():
            per_crop = np.concatenate(parts)
            summed = np.zeros((n, per_crop.shape[1]))
            np.add.at(summed, owner, per_crop)
            result[name] = (summed / counts).astype(np.float32)
        result["mel"] = np.stack([np.concatenate([f.mean(0), f.std(0)]) for f in feats]).astype(np.float32)
        return result

    def embed(self, params, model_state, corpus):
        kept, feats = corpus_features(corpus, "ad_mel", cache_dir=self.config.get("cache_dir") or None,
                                      skip_bad=self.config.data.skip_bad_audio)
        kept.table["duration"] = [len(f) * HOP_SECONDS for f in feats]
        return kept, self.embed_features(params, model_state, feats)

    def embed_waves(self, params, model_state, waves: list[np.ndarray]) -> dict[str, np.ndarray]:
        return self.embed_features(params, model_state, features_for_waves(waves, "ad_mel"))

    def evaluate(self, params, model_state, step, workdir):
        """Speaker ID at 10 s on the held-out speakers, for both encoders and the mel baseline."""
        from jaxdis.eval.speaker_id import speaker_id_f1

        _, heldout = corpus_splits(self.config)
        if len(heldout) == 0:
            return {}
        kept, emb = self.embed(params, model_state, heldout)
        out = {}
        for name, x in emb.items():
            res = speaker_id_f1(x, kept.table["speaker"].to_numpy(), kept.table["duration"].to_numpy(), budgets=(10,),
                                repeats=3, seed=0)
            if res:
                out[f"f1.{name}.10s"] = res[0].f1_mean
        return out
