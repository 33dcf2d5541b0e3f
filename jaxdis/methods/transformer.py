"""Masked k-means prediction with the pseudo-con loss (Learn2Diss §3.2.2, eq. 3–4).

Frames of the input are hidden by wav2vec 2.0 span masks (a learned mask embedding takes
their place), and the encoder's last layer y^M predicts, at the masked frames only,

- the k-means cluster ν_t of each frame (cross-entropy through a linear softmax head), and
- the pseudo-con loss: a supervised contrastive loss over every masked frame of the batch
  whose positives are the frames sharing its cluster (eq. 3), with temperature τ.

Targets are computed on the fly from the same crop, so any random crop has its labels:
``objective.targets = "mfcc"`` clusters 39-d MFCCs (13 + Δ + ΔΔ, by DCT of the log-mel;
HuBERT's first iteration); ``"layer"`` clusters layer ``target_layer`` of a frozen teacher
(a previous run's workdir or a transformers checkpoint; HuBERT's second iteration and
Learn2Diss's K = 2048 targets from HuBERT layer 9). Centroids (and the teacher) live in
``model_state``: they are saved with the checkpoints and never trained.
"""

from __future__ import annotations

import functools
import json
import logging
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdis import kmeans
from jaxdis.masking import span_mask
from jaxdis.methods.base import Method
from jaxdis.models.transformer import (FrameEncoder, FrameEncoderConfig, dense, frame_mask, is_frozen_path,
                                      normalize_frames)

log = logging.getLogger("jaxdis.transformer")

FBANK_RATE = 100          # log-mel frames per second (10 ms hop)
SAMPLE_RATE = 16000


# --------------------------------------------------------------------------- model and losses

class MaskedPredictor(nn.Module):
    """FrameEncoder + a linear head over the K clusters."""

    cfg: FrameEncoderConfig
    num_clusters: int

    @nn.compact
    def __call__(self, x, mask, span, train: bool):
        last, aux = FrameEncoder(self.cfg, name="encoder")(x, mask, span_mask=span, train=train)
        logits = dense(self.cfg, self.num_clusters, "head")(last)
        return logits.astype(jnp.float32), last, aux                        # (B, T, K), (B, T, D)


def encoder_config(model_cfg) -> FrameEncoderConfig:
    """FrameEncoderConfig from the config's ``model`` block (size preset + overrides)."""
    m = dict(model_cfg)
    size = m.pop("size", "small")
    m.pop("init_from_hf", None)
    frozen = m.pop("frozen_layers", -1)
    m = {k: tuple(v) if isinstance(v, list) else v for k, v in m.items()}
    return FrameEncoderConfig.from_name(size, frozen_layers=None if frozen is None or frozen < 0 else int(frozen), **m)


def mfcc(logmel: jax.Array, n_mfcc: int = 13, deltas: bool = True) -> jax.Array:
    """(..., F, n_mels) log-mel → (..., F, 13 | 39) MFCCs (orthonormal DCT-II) with Δ and ΔΔ
    (±2-frame regression, edges repeated)."""
    n_mels = logmel.shape[-1]
    k = np.arange(n_mfcc)[:, None]
    dct = np.cos(np.pi / n_mels * (np.arange(n_mels)[None, :] + 0.5) * k) * np.sqrt(2.0 / n_mels)
    dct[0] /= np.sqrt(2.0)
    c = logmel.astype(jnp.float32) @ jnp.asarray(dct.T, jnp.float32)       # (..., F, 13)
    if not deltas:
        return c

    def delta(v):
        p = jnp.concatenate([v[..., :1, :]] * 2 + [v] + [v[..., -1:, :]] * 2, axis=-2)
        f = v.shape[-2]
        return (p[..., 3:3 + f, :] - p[..., 1:1 + f, :] + 2 * (p[..., 4:4 + f, :] - p[..., :f, :])) / 10.0

    d1 = delta(c)
    return jnp.concatenate([c, d1, delta(d1)], axis=-1)


def pseudo_con(y: jax.Array, labels: jax.Array, use: jax.Array, key: jax.Array, tau: float = 0.1,
               max_frames: int = 1024, denominator: str = "negatives", normalize: bool = True) -> jax.Array:
    """Pseudo-con loss (eq. 3): supervised contrastive over the masked frames of the batch.

    y: (B, T, D) frames; labels: (B, T) clusters; use: (B, T) bool frames taking part
    (masked and real). A fixed-size random subset of `max_frames` of them keeps the shape
    static and the (P, P) similarity matrix bounded. For anchor t with positives P(t)
    (same cluster, t excluded): −1/|P(t)| Σ_p log(exp(s_tp) / Σ_{a∈A(t)} exp(s_ta)),
    s = y_t·y_a/τ (cosine if `normalize`). A(t) = the frames of other clusters, as eq. 3
    defines it ("negatives"), or every frame but t ("all": SupCon's L_out). Eq. 3 prints
    the ratio without the log; the log form is the supervised contrastive loss it cites.
    Anchors without positives are skipped; the mean is over the remaining anchors.
    """
    b, t, d = y.shape
    flat_y, flat_l, flat_u = y.reshape(b * t, d), labels.reshape(-1), use.reshape(-1)
    n = min(max_frames, b * t)
    score = jnp.where(flat_u, jax.random.uniform(key, (b * t,)), -1.0)
    _, idx = jax.lax.top_k(score, n)                                          # (P,) random used frames first
    z, lab, ok = flat_y[idx].astype(jnp.float32), flat_l[idx], flat_u[idx]
    if normalize:
        z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-6)
    s = z @ z.T / tau                                                         # (P, P)
    pair = ok[:, None] & ok[None, :] & ~jnp.eye(n, dtype=bool)
    same = (lab[:, None] == lab[None, :]) & pair
    denom_set = (pair & ~same) if denominator == "negatives" else pair
    log_den = jax.nn.logsumexp(jnp.where(denom_set, s, -jnp.inf), axis=-1)    # (P,)
    log_den = jnp.where(jnp.isfinite(log_den), log_den, 0.0)                  # no negatives: ratio w.r.t. nothing
    n_pos = same.sum(-1)
    per_anchor = -jnp.sum(jnp.where(same, s - log_den[:, None], 0.0), axis=-1) / jnp.maximum(n_pos, 1)
    anchors = ok & (n_pos > 0)
    return jnp.sum(jnp.where(anchors, per_anchor, 0.0)) / jnp.maximum(anchors.sum(), 1)


def masked_mean(v: jax.Array, m: jax.Array) -> jax.Array:
    m = m.astype(jnp.float32)
    return jnp.sum(v * m) / jnp.maximum(jnp.sum(m), 1.0)


# --------------------------------------------------------------------------- the method

class TransformerMethod(Method):
    name = "transformer"

    def __init__(self, config):
        super().__init__(config)
        self.cfg = encoder_config(config.model)
        o = config.objective
        self.model = MaskedPredictor(self.cfg, int(o.num_clusters))
        self._teacher_cfg = None
        self._cache: dict = {}

    # ---- data ------------------------------------------------------------------------
    @property
    def crop(self) -> int:
        rate = FBANK_RATE if self.cfg.frontend == "fbank" else SAMPLE_RATE
        return int(round(self.config.data.crop_seconds * rate))

    def _features(self, corpus) -> tuple:
        """(kept corpus with a duration column, list of (T_i, 80) fbank or (S_i, 1) waveforms)."""
        skip = self.config.data.skip_bad_audio
        if self.cfg.frontend == "fbank":
            from jaxdis.data.features import corpus_features

            kept, feats = corpus_features(corpus, "fbank", cache_dir=self.config.get("cache_dir") or None,
                                          skip_bad=skip)
            kept.table["duration"] = [len(f) / FBANK_RATE for f in feats]
        else:
            from jaxdis.data.corpus import load_waveforms

            kept, waves = load_waveforms(corpus, SAMPLE_RATE, skip_bad=skip)
            feats = [np.asarray(w, np.float32)[:, None] for w in waves]
            kept.table["duration"] = [len(w) / SAMPLE_RATE for w in waves]
        return kept, feats

    def _splits(self):
        if "splits" not in self._cache:
            from jaxdis.methods.common import corpus_splits

            train, heldout = corpus_splits(self.config)
            self._cache["splits"] = (self._features(train), self._features(heldout) if len(heldout) else None)
        return self._cache["splits"]

    def data(self):
        from jaxdis.data.batching import CropSource

        (_, feats), _ = self._splits()
        self.prepare_targets()  # fit k-means now, outside the trainer's jit
        return CropSource(feats, self.crop, self.config.train.batch_size, self.config.seed)

    def _inputs(self, batch):
        x = jnp.asarray(batch["x"])
        if self.cfg.frontend == "waveform":
            x = x[..., 0]                                                    # (B, S, 1) → (B, S)
        return x, jnp.asarray(batch["mask"])

    # ---- targets -----------------------------------------------------------------------
    def _target_features(self, model_state, x, mask):
        """(B, T, d_target) features that the k-means targets quantise (not standardised)."""
        o = self.config.objective
        if o.targets == "mfcc":
            t = self.cfg.num_frames(x.shape[1])
            if self.cfg.frontend == "fbank":
                if o.get("mfcc_norm", "none") == "utterance":
                    # The encoder sees per-utterance CMVN'd log-mel: MFCCs of that very input,
                    # so no target depends on an utterance's gain or channel it cannot see.
                    x = normalize_frames(x, mask)
                c = mfcc(x)                                                    # (B, F, 39)
                b, _, d = c.shape
                s = self.cfg.fbank_stack
                return c[:, :t * s].reshape(b, t, s, d).mean(2)                # (B, T, 39)
            # Waveform: the 25 ms / 10 ms log-mel of the same samples, the fbank frame
            # nearest to the centre of each encoder frame's receptive field.
            from jaxdis.data.features import log_fbank

            logmel, _ = log_fbank(x, mask.astype(jnp.int32).sum(-1))           # (B, 1 + S // 160, 80)
            centre = np.arange(t) * self.cfg.hop + self.cfg.receptive_field / 2
            idx = np.minimum(np.round(centre / 160).astype(np.int32), logmel.shape[1] - 1)
            return mfcc(logmel)[:, idx]                                        # (B, T, 39)
        if o.targets == "layer":
            tcfg = self.teacher_config()
            _, aux = FrameEncoder(tcfg).apply({"params": model_state["teacher"]}, x, mask)
            return aux["hidden_states"][int(o.target_layer)].astype(jnp.float32)
        raise ValueError(f"unknown objective.targets {o.targets!r}; use mfcc or layer")

    def targets(self, model_state, x, mask):
        """(B, T) int32 cluster of every frame."""
        feats = jax.lax.stop_gradient(self._target_features(model_state, x, mask))
        t = model_state["targets"]
        z = (feats - t["mean"]) / t["std"]
        b, n, d = z.shape
        return kmeans.predict(t["centroids"], z.reshape(b * n, d)).reshape(b, n)

    def teacher_config(self) -> FrameEncoderConfig:
        """Teacher = the source of layer targets, truncated to target_layer layers."""
        if self._teacher_cfg is None:
            src = self.config.objective.teacher or ""
            if src.startswith("hf:"):
                from jaxdis.convert.transformers_hubert import load_pretrained

                cfg, params = load_pretrained(src[3:])
                self._cache["teacher_params"] = params
            elif src:
                from jaxdis.train import restore

                tconfig, _, params, _ = restore(src)
                cfg = encoder_config(tconfig.model)
                self._cache["teacher_params"] = params["encoder"]
            else:
                raise ValueError("objective.targets='layer' needs objective.teacher: a workdir or hf:<dir>")
            layer = int(self.config.objective.target_layer)
            if cfg.frontend != self.cfg.frontend:
                raise ValueError(f"the teacher reads {cfg.frontend!r} input but the model reads {self.cfg.frontend!r}")
            self._teacher_cfg = cfg.replace(layers=layer, frozen_layers=None, dropout=0.0, activation_dropout=0.0,
                                            feat_dropout=0.0, dtype=self.cfg.dtype)
        return self._teacher_cfg

    def _teacher_params(self):
        cfg = self.teacher_config()
        p = self._cache["teacher_params"]
        return {k: v for k, v in p.items()
                if not (k.startswith("encoder_layers_") and int(k.rsplit("_", 1)[1]) >= cfg.layers)
                and k != "masked_spec_embed"}

    def _fit_targets(self, teacher) -> dict:
        """k-means on target features of training crops: {centroids, mean, std}."""
        if "targets" in self._cache:
            return self._cache["targets"]
        o = self.config.objective
        (_, feats), _ = self._splits()
        rng = np.random.default_rng(self.config.seed)
        order = rng.permutation(len(feats))
        fn = jax.jit(lambda x, m: self._target_features({"teacher": teacher}, x, m))
        per_batch = 16
        got, total = [], 0
        for lo in range(0, len(order), per_batch):
            idx = order[lo:lo + per_batch]
            x, m = _pad_batch([feats[i] for i in idx], self.crop * 4, per_batch)
            f = np.asarray(fn(*self._inputs({"x": x, "mask": m})))
            valid = np.asarray(frame_mask(self.cfg, jnp.asarray(m), f.shape[0], f.shape[1]))
            got.append(f[valid])
            total += int(valid.sum())
            if total >= o.kmeans_frames:
                break
        x = np.concatenate(got)[: int(o.kmeans_frames)]
        mean, std = x.mean(0), x.std(0) + 1e-5
        km = kmeans.fit(jax.random.PRNGKey(self.config.seed), (x - mean) / std, int(o.num_clusters),
                        steps=int(o.kmeans_steps), batch_size=min(4096, len(x)))
        log.info("k-means on %d frames of %s features: K=%d, inertia %.3f", len(x), o.targets, o.num_clusters,
                 km.inertia)
        self._cache["targets"] = {"centroids": np.asarray(km.centroids), "mean": mean.astype(np.float32),
                                  "std": std.astype(np.float32)}
        return self._cache["targets"]

    # ---- Method contract ---------------------------------------------------------------
    def init(self, rng, batch):
        x, mask = self._inputs(batch)
        t = self.cfg.num_frames(x.shape[1])
        span = jnp.zeros((x.shape[0], t), bool)
        params = self.model.init({"params": rng}, x, mask, span, train=False)["params"]
        src = self.config.model.get("init_from_hf", "")
        if src:  # pretrained encoder weights (constants here; the trainer jits init)
            from jaxdis.convert.transformers_hubert import load_pretrained, merge_params

            _, loaded = load_pretrained(src)
            params = {**params, "encoder": merge_params(params["encoder"], loaded)}
        targets, teacher = self.prepare_targets()
        state = {"targets": jax.tree.map(jnp.asarray, targets)}
        if teacher:
            state["teacher"] = jax.tree.map(jnp.asarray, teacher)
        return params, state

    def prepare_targets(self) -> tuple[dict, dict]:
        """(k-means {centroids, mean, std}, teacher params or {}), computed once. Runs eagerly
        even inside the trainer's jitted init."""
        with jax.ensure_compile_time_eval():
            teacher = {}
            if self.config.objective.targets == "layer":
                self.teacher_config()
                teacher = self._teacher_params()
            return self._fit_targets(teacher), teacher

    def loss(self, params, model_state, batch, rng):
        o = self.config.objective
        x, mask = self._inputs(batch)
        k_mask, k_drop, k_pc = jax.random.split(rng, 3)
        b = x.shape[0]
        t = self.cfg.num_frames(x.shape[1])
        valid = frame_mask(self.cfg, mask, b, t)                               # (B, T)
        span = span_mask(k_mask, valid, o.mask_prob, o.mask_span, o.min_spans)  # (B, T)
        labels = self.targets(model_state, x, mask)                            # (B, T)
        logits, last, _ = self.model.apply({"params": params}, x, mask, span, train=True, rngs={"dropout": k_drop})
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)   # (B, T)
        hit = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
        masked_ce = masked_mean(ce, span)
        loss = masked_ce
        metrics = {"masked_ce": masked_ce, "masked_acc": masked_mean(hit, span),
                   "unmasked_acc": masked_mean(hit, valid & ~span), "mask_frac": masked_mean(span, valid)}
        if o.unmasked_weight:
            loss = loss + o.unmasked_weight * masked_mean(ce, valid & ~span)
        if o.pc_weight:
            pc = pseudo_con(last, labels, span, k_pc, o.tau, o.pc_frames, o.pc_denominator, o.pc_normalize)
            loss = loss + o.pc_weight * pc
            metrics["pseudo_con"] = pc
        return loss, (metrics, model_state)

    def optimizer(self, total_steps):
        from jaxdis.train.optim import make_optimizer

        opt = make_optimizer(self.config.optim, total_steps)
        if self.cfg.frozen_layers is None:
            return opt

        def labels(params):
            return jax.tree_util.tree_map_with_path(
                lambda path, _: "frozen" if path[0].key == "encoder" and is_frozen_path([p.key for p in path[1:]], self.cfg)
                else "train", params)

        return optax.multi_transform({"train": opt, "frozen": optax.set_to_zero()}, labels)

    # ---- embeddings and evaluation ---------------------------------------------------
    def eval_layers(self) -> list[int]:
        layers = list(self.config.eval.layers) or [self.cfg.layers]
        return [l % (self.cfg.layers + 1) for l in layers]

    @functools.lru_cache(maxsize=4)
    def _encode(self, layers: tuple[int, ...]):
        def encode(params, x, mask):
            _, aux = FrameEncoder(self.cfg).apply({"params": params["encoder"]}, x, mask)
            m = aux["mask"].astype(jnp.float32)[..., None]                     # (B, T, 1)
            return {f"layer{l}": jnp.sum(aux["hidden_states"][l].astype(jnp.float32) * m, 1) / jnp.maximum(m.sum(1), 1)
                    for l in layers}                                           # {name: (B, D)}

        return jax.jit(encode)

    def embed_features(self, params, feats: list[np.ndarray], batch_size: int = 16,
                       layers: list[int] | None = None) -> dict[str, np.ndarray]:
        """Mean-pooled frames of each eval layer (or of `layers`): {"layer<l>": (N, D)}.
        Utterances are sorted by length and padded to multiples of one crop so few shapes compile."""
        encode = self._encode(tuple(self.eval_layers() if layers is None else layers))
        order = np.argsort([len(f) for f in feats])
        out: dict[str, list] = {}
        for lo in range(0, len(order), batch_size):
            idx = order[lo:lo + batch_size]
            longest = max(len(feats[i]) for i in idx)
            x, m = _pad_batch([feats[i] for i in idx], -(-longest // self.crop) * self.crop, batch_size)
            res = jax.device_get(encode(params, *self._inputs({"x": x, "mask": m})))
            for k, v in res.items():
                out.setdefault(k, []).append(v[:len(idx)])
        inv = np.argsort(order)
        return {k: np.concatenate(v)[inv].astype(np.float32) for k, v in out.items()}

    def embed(self, params, model_state, corpus):
        kept, feats = self._features(corpus)
        return kept, self.embed_features(params, feats)

    def embed_waves(self, params, model_state, waves):
        if self.cfg.frontend == "fbank":
            from jaxdis.data.features import features_for_waves

            feats = features_for_waves(waves, "fbank")
        else:
            feats = [np.asarray(w, np.float32)[:, None] for w in waves]
        return self.embed_features(params, feats)

    @functools.cached_property
    def _masked_stats(self):
        """jit: (params, model_state, x, mask, key) → (Σ CE, Σ correct, count) over masked frames."""
        o = self.config.objective

        def stats(params, model_state, x, mask, key):
            b, t = x.shape[0], self.cfg.num_frames(x.shape[1])
            valid = frame_mask(self.cfg, mask, b, t)
            span = span_mask(key, valid, o.mask_prob, o.mask_span, o.min_spans)
            labels = self.targets(model_state, x, mask)
            logits, _, _ = self.model.apply({"params": params}, x, mask, span, train=False)
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
            hit = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
            w = span.astype(jnp.float32)
            counts = jnp.zeros((self.model.num_clusters,), jnp.float32).at[labels.reshape(-1)].add(w.reshape(-1))
            return jnp.stack([jnp.sum(ce * w), jnp.sum(hit * w), jnp.sum(w)]), counts

        return jax.jit(stats)

    def heldout_masked_ce(self, params, model_state, num_batches: int = 8) -> dict[str, float]:
        """Masked CE / accuracy on fixed held-out crops and masks (no dropout)."""
        from jaxdis.data.batching import CropSource

        _, held = self._splits()
        if held is None:
            return {}
        src = CropSource(held[1], self.crop, self.config.train.batch_size, seed=1234)
        tot, counts = np.zeros(3), np.zeros(self.model.num_clusters)
        for s in range(num_batches):
            x, mask = self._inputs(src.batch(s))
            t, c = jax.device_get(self._masked_stats(params, model_state, x, mask, jax.random.PRNGKey(s)))
            tot, counts = tot + np.asarray(t), counts + np.asarray(c)
        p = counts[counts > 0] / counts.sum()
        # The CE of the best predictor that ignores the input (the clusters' own frequencies
        # on these very frames): what masked prediction has to beat.
        return {"heldout_masked_ce": tot[0] / tot[2], "heldout_masked_acc": tot[1] / tot[2],
                "heldout_unigram_ce": float(-(p * np.log(p)).sum()), "heldout_majority_acc": float(p.max())}

    def _probe_set(self):
        """(kept corpus, feats) of ``eval.probe_speakers`` held-out speakers (0: all), drawn once."""
        if "probe_set" not in self._cache:
            _, held = self._splits()
            self._cache["probe_set"] = (_speaker_subset(*held, self.config.eval.probe_speakers, self.config.seed)
                                        if held else None)
        return self._cache["probe_set"]

    def probes(self, params, baseline_params=None) -> dict[str, float]:
        """Content probe (sentence identity) and speaker ID from mean-pooled frames of
        held-out speakers (voices the model never trained on).

        Content, with ``eval.probe_folds`` set (≥ 0): cross-validated over the probe speakers
        (``jaxdis.eval.probes.probe_correct``; 0 = leave one speaker out), so every utterance is
        tested once by a probe fitted on other voices; ``content_acc.<name>`` is that accuracy and
        ``content_acc.<name>.se`` its standard error clustered by speaker. Without the field (run
        configs from before it): one split, ``probe_accuracy`` with the speakers as groups and
        ``eval.probe_test_frac`` of them tested. Speaker ID: the shared few-label protocol
        (``speaker_id_f1``). Both also for the input's mean and std over time ("input"), a
        baseline without any model. With ``eval.probe_all_layers`` every hidden state
        y^0 … y^L is probed (y^0: the input of layer 1) and the best layer's scores are
        reported as ``content_acc.best`` / ``speaker_f1.best`` beside its index.

        `baseline_params` (the untrained model): its scores too, under ``untrained.``, on the
        same utterances, folds and speaker-ID draws; with folds, the paired difference
        ``content_acc.<name>.delta_vs_untrained`` (trained − untrained, same utterances) and
        ``content_acc.<name>.delta_se`` (clustered by speaker), also for ``best`` (each
        model's best layer)."""
        from jaxdis.eval.probes import clustered_se, probe_accuracy, probe_correct
        from jaxdis.eval.speaker_id import speaker_id_f1

        probe_set = self._probe_set()
        if probe_set is None:
            return {}
        kept, feats = probe_set
        layers = self.eval_layers()
        if self.config.eval.get("probe_all_layers", False):
            layers = sorted(set(range(self.cfg.layers + 1)) | set(layers))
        models = {"": self.embed_features(params, feats, layers=layers)}
        if baseline_params is not None:
            models["untrained."] = self.embed_features(baseline_params, feats, layers=layers)
        shared = {"input": _mean_std(feats)} if self.cfg.frontend == "fbank" else {}
        speakers = kept.table["speaker"].astype(str).to_numpy()
        col, e = self.config.eval.content_label, self.config.eval
        folds = e.get("probe_folds", None)
        content = bool(col and col in kept.table.columns and len(set(speakers)) > 1)
        labels = kept.table[col].to_numpy() if content else None
        durations = kept.table["duration"].to_numpy(float)

        def score(x, name):
            """Content accuracy of x (with its s.e. and per-row correctness under folds) and speaker ID."""
            res, c = {}, None
            if content and folds is None:
                res[f"content_acc.{name}"] = probe_accuracy(x, labels, groups=speakers,
                                                            test_frac=float(e.probe_test_frac))
            elif content:
                c = probe_correct(x, labels, speakers, n_folds=int(folds), seed=self.config.seed)
                res[f"content_acc.{name}"], res[f"content_acc.{name}.se"] = float(c.mean()), clustered_se(c, speakers)
            for r in speaker_id_f1(x, speakers, durations, budgets=tuple(e.sid_budgets), repeats=int(e.sid_repeats),
                                   seed=0):
                res[f"speaker_f1.{name}.{r.seconds:g}s"] = r.f1_mean
            return res, c

        out, correct = {}, {}
        for prefix, emb in models.items():
            for name, x in emb.items():
                res, c = score(x, name)
                out.update({prefix + k: v for k, v in res.items()})
                if c is not None:
                    correct[prefix, name] = c
        for name, x in shared.items():   # the same for every model: scored once, reported under each prefix
            res = score(x, name)[0]
            out.update({prefix + k: v for prefix in models for k, v in res.items()})
        budget = f".{e.sid_budgets[0]:g}s"
        best_of = {}
        for prefix in models:
            for kind, suffix in (("content_acc", ""), ("speaker_f1", budget)):
                per_layer = {l: out[f"{prefix}{kind}.layer{l}{suffix}"] for l in layers
                             if f"{prefix}{kind}.layer{l}{suffix}" in out}
                if len(per_layer) > 1:
                    best = best_of[prefix, kind] = max(per_layer, key=per_layer.get)
                    out[f"{prefix}{kind}.best"], out[f"{prefix}{kind}.best_layer"] = per_layer[best], float(best)
        if "untrained." in models and correct:
            pairs = [(n, n, n) for n in models[""]]
            if ("", "content_acc") in best_of and ("untrained.", "content_acc") in best_of:
                pairs.append(("best", f"layer{best_of['', 'content_acc']}", f"layer{best_of['untrained.', 'content_acc']}"))
            for key, mine, theirs in pairs:
                d = correct["", mine].astype(np.float64) - correct["untrained.", theirs]
                out[f"content_acc.{key}.delta_vs_untrained"] = float(d.mean())
                out[f"content_acc.{key}.delta_se"] = clustered_se(d, speakers)
        return out

    def untrained_params(self):
        """(params, model_state) of the untrained model: the trainer's step-0 init (same seed)."""
        init_rng, _ = jax.random.split(jax.random.PRNGKey(self.config.seed))
        return jax.jit(self.init)(init_rng, self.data().batch(0))

    def evaluate(self, params, model_state, step, workdir):
        """Held-out masked CE, content probe and speaker ID; the same for the untrained model
        (same seed and init as step 0) under ``untrained.``, its probes on the same utterances,
        folds and draws (paired), also written to ``<workdir>/untrained_eval.json``."""
        if "targets" not in self._cache and "targets" in model_state:
            # a restored run: its k-means as saved (the untrained model's init needs no refit)
            self._cache["targets"] = jax.device_get(model_state["targets"])
        out = dict(self.heldout_masked_ce(params, model_state))
        if not self.config.eval.compare_untrained:
            return {k: float(v) for k, v in {**out, **self.probes(params)}.items()}
        p0, s0 = self.untrained_params()
        out.update({f"untrained.{k}": v for k, v in self.heldout_masked_ce(p0, s0).items()})
        out.update(self.probes(params, baseline_params=p0))
        out = {k: float(v) for k, v in out.items()}
        if jax.process_index() == 0:
            os.makedirs(workdir, exist_ok=True)
            with open(os.path.join(workdir, "untrained_eval.json"), "w") as f:
                json.dump({k[len("untrained."):]: v for k, v in out.items() if k.startswith("untrained.")}, f, indent=2)
        return out


def _pad_batch(seqs: list[np.ndarray], length: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, length, F) zero-padded (and truncated) batch + (rows, length) mask."""
    x = np.zeros((rows, length, seqs[0].shape[1]), np.float32)
    m = np.zeros((rows, length), bool)
    for i, s in enumerate(seqs):
        n = min(len(s), length)
        x[i, :n], m[i, :n] = s[:n], True
    return x, m


def _speaker_subset(kept, feats, n: int, seed: int):
    """The utterances of `n` speakers drawn at random (all of them if n <= 0)."""
    speakers = np.array(sorted(set(kept.table["speaker"].astype(str))))
    if 0 < n < len(speakers):
        speakers = np.random.default_rng([seed, 0x9B0BE]).choice(speakers, n, replace=False)
    keep = np.isin(kept.table["speaker"].astype(str).to_numpy(), speakers)
    return kept.subset(keep), [f for f, k in zip(feats, keep) if k]


def _mean_std(feats: list[np.ndarray]) -> np.ndarray:
    return np.stack([np.concatenate([f.mean(0), f.std(0)]) for f in feats]).astype(np.float32)
