"""ECAPA-TDNN utterance encoder: self-supervised (Learn2Diss §3.2.3) or supervised training.

Objectives (``config.objective.name``):

- ``"infonce"`` (default, no labels): two non-overlapping 1 s crops of each utterance are
  embedded and pulled together against every other crop of the batch (SimCLR NT-Xent,
  Learn2Diss eq. 5).
- ``"pseudo"`` (no labels): InfoNCE plus cross-entropy on k-means pseudo-labels (eq. 6–7).
  A previous ``infonce`` run (``objective.teacher``, a workdir) embeds every training
  utterance; k-means with Q clusters on the unit-normalised embeddings gives each utterance
  its label μ_i; a linear softmax head over the Q clusters is trained on both crops. The
  encoder starts from the teacher's weights (the paper's continued training).
- ``"aam"`` (speaker labels): additive angular margin softmax over the training speakers
  (margin 0.2, scale 30), one crop per utterance.

Inputs are the 80-d log filterbank (``fbank``, 100 frames/s) with the mean over each
crop's (or utterance's) real frames subtracted, as speechbrain's sentence-level mean
normalisation does; this also removes the per-utterance gain, a shortcut for InfoNCE.
"""

from __future__ import annotations

import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np

from jaxdis.losses import aam_softmax, info_nce, softmax_ce
from jaxdis.methods.base import Method
from jaxdis.models.ecapa import Ecapa, EcapaConfig

log = logging.getLogger("jaxdis.ecapa")

FRAME_SECONDS = 0.01          # fbank hop
OBJECTIVES = ("infonce", "pseudo", "aam")


def model_config(model_cfg) -> EcapaConfig:
    """EcapaConfig from the config's ``model`` block (fields of EcapaConfig; others ignored)."""
    m = dict(model_cfg)
    fields = {k: m[k] for k in EcapaConfig.__dataclass_fields__ if k in m}
    for k in ("channels", "kernel_sizes", "dilations"):
        if k in fields:
            fields[k] = tuple(int(v) for v in fields[k])
    return EcapaConfig(**fields)


def mean_normalize(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Subtracts each row's mean over its real frames; padded frames stay 0. x (B, T, F)."""
    w = mask.astype(x.dtype)[..., None]
    mean = jnp.sum(x * w, axis=1, keepdims=True) / jnp.maximum(jnp.sum(w, axis=1, keepdims=True), 1.0)
    return (x - mean) * w


def length_buckets(lengths: np.ndarray, frames_per_batch: int = 16384, min_len: int = 128) -> list[tuple[int, np.ndarray]]:
    """Groups utterances by padded length, lengths rounded up to 128·{1, 1.5, 2, 3, 4, 6, …}
    (few compiled shapes; padding never changes an embedding). Returns (padded_len, rows)."""
    sizes, s = [], min_len
    while s < max(int(lengths.max()), 1):
        sizes += [s, s * 3 // 2]
        s *= 2
    sizes.append(max(s, int(lengths.max())))
    sizes = np.array(sorted(set(sizes)))
    padded = sizes[np.searchsorted(sizes, lengths)]
    out = []
    for plen in np.unique(padded):
        idx = np.flatnonzero(padded == plen)
        rows = max(1, frames_per_batch // int(plen))
        out += [(int(plen), idx[s:s + rows]) for s in range(0, len(idx), rows)]
    return out


@functools.lru_cache(maxsize=8)
def embed_fn(cfg: EcapaConfig):
    """Jitted (variables, x, mask) → eval-mode embeddings, one per model config, so a
    teacher, a student and eval.py with the same model share their traces."""
    model = Ecapa(cfg)

    @jax.jit
    def fn(variables, x, mask):
        emb, _ = model.apply(variables, mean_normalize(x, mask), mask)
        return emb

    return fn


class EcapaMethod(Method):
    name = "ecapa"

    def __init__(self, config):
        super().__init__(config)
        self.cfg = model_config(config.model)
        self.model = Ecapa(self.cfg)
        self.objective = config.objective.name
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; use one of {OBJECTIVES}")
        self.crop = int(config.model.crop_frames)
        self._cache: dict = {}

    # ---- data ----------------------------------------------------------------------
    def _features(self, corpus):
        from jaxdis.data.features import corpus_features

        return corpus_features(corpus, "fbank", cache_dir=self.config.get("cache_dir") or None,
                               skip_bad=self.config.data.skip_bad_audio)

    def _train(self):
        """(kept training corpus, its fbank features), computed once."""
        if "train" not in self._cache:
            from jaxdis.methods.common import corpus_splits

            train, _ = corpus_splits(self.config)
            self._cache["train"] = self._features(train)
        return self._cache["train"]

    def speakers(self) -> list[str]:
        """Training speakers, in class-index order (the AAM head's rows)."""
        kept, _ = self._train()
        return sorted(kept.table["speaker"].astype(str).unique())

    def data(self):
        from jaxdis.data.batching import CropSource

        kept, feats = self._train()
        c = self.config
        if self.objective == "aam":
            index = {s: i for i, s in enumerate(self.speakers())}
            labels = {"label": np.array([index[s] for s in kept.table["speaker"].astype(str)], np.int32)}
            return CropSource(feats, self.crop, c.train.batch_size, c.seed, labels=labels, views=1)
        labels = {"label": self.pseudo_labels()} if self.objective == "pseudo" else None
        return CropSource(feats, self.crop, c.train.batch_size, c.seed, labels=labels, views=2)

    # ---- pseudo-labels ---------------------------------------------------------------
    def _teacher(self):
        """(method, params, model_state) of ``objective.teacher``, restored once."""
        if "teacher" not in self._cache:
            from jaxdis.train import restore

            src = self.config.objective.get("teacher", "")
            if not src:
                raise ValueError("objective.name='pseudo' needs objective.teacher: the workdir of an infonce run")
            tconfig, tmethod, params, state = restore(src)
            if tconfig.method != "ecapa":
                raise ValueError(f"teacher {src} is a {tconfig.method!r} run, not ecapa")
            if tmethod.cfg.replace(dtype=self.cfg.dtype) != self.cfg:
                raise ValueError(f"teacher {src} has model {tmethod.cfg}, but this run's model is {self.cfg}")
            self._cache["teacher"] = (tmethod, params, state)
        return self._cache["teacher"]

    def pseudo_labels(self) -> np.ndarray:
        """(N,) k-means cluster of each training utterance's teacher embedding (eq. 6's μ_i)."""
        if "pseudo" not in self._cache:
            from jaxdis import kmeans

            o = self.config.objective
            tmethod, params, state = self._teacher()
            _, feats = self._train()
            with jax.ensure_compile_time_eval():
                z = tmethod.embed_features(params, state, feats)["speaker"]
                z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
                km, labels = kmeans.fit_predict(jax.random.PRNGKey(self.config.seed), z, int(o.num_clusters),
                                                steps=int(o.kmeans_steps), batch_size=min(4096, len(z)))
            sizes = np.bincount(labels, minlength=int(o.num_clusters))
            log.info("pseudo-labels: k-means Q=%d on %d teacher embeddings, inertia %.4f, cluster sizes %d–%d",
                     o.num_clusters, len(z), km.inertia, sizes.min(), sizes.max())
            self._cache["pseudo"] = labels.astype(np.int32)
        return self._cache["pseudo"]

    # ---- model -----------------------------------------------------------------------
    def _flat(self, batch):
        """(x (N, T, F) mean-normalised, mask (N, T), labels (N,) or None, views)."""
        x, mask = jnp.asarray(batch["x"], jnp.float32), jnp.asarray(batch["mask"])
        labels = batch.get("label")
        views = 1
        if x.ndim == 4:                                                        # (B, V, T, F): view-major rows
            b, views = x.shape[:2]
            x = jnp.swapaxes(x, 0, 1).reshape((views * b,) + x.shape[2:])      # (V·B, T, F)
            mask = jnp.swapaxes(mask, 0, 1).reshape(views * b, -1)
            if labels is not None:
                labels = jnp.tile(jnp.asarray(labels), views)
        return mean_normalize(x, mask), mask, labels, views

    def init(self, rng, batch):
        k_enc, k_head = jax.random.split(rng)
        x, mask, _, _ = self._flat(batch)
        variables = self.model.init({"params": k_enc}, x[:2], mask[:2])
        params = {"encoder": variables["params"]}
        state = {"batch_stats": variables["batch_stats"]}
        o = self.config.objective
        e = self.cfg.embed_dim
        if self.objective == "aam":
            n = len(self.speakers())
            limit = np.sqrt(6.0 / (n + e))                                     # xavier uniform, as speechbrain
            params["aam"] = jax.random.uniform(k_head, (n, e), jnp.float32, -limit, limit)
        elif self.objective == "pseudo":
            q = int(o.num_clusters)
            params["cluster_head"] = {"kernel": jax.random.normal(k_head, (e, q)) / np.sqrt(e),
                                      "bias": jnp.zeros((q,))}
            with jax.ensure_compile_time_eval():
                _, tparams, tstate = self._teacher()
            params["encoder"] = jax.tree.map(jnp.asarray, tparams["encoder"])
            state = {"batch_stats": jax.tree.map(jnp.asarray, tstate["batch_stats"])}
        return params, state

    def loss(self, params, model_state, batch, rng):
        o = self.config.objective
        x, mask, labels, views = self._flat(batch)
        (emb, _), updates = self.model.apply({"params": params["encoder"], **model_state}, x, mask, train=True,
                                             mutable=["batch_stats"])          # (V·B, E)
        new_state = {"batch_stats": updates["batch_stats"]}
        if self.objective == "aam":
            loss, m = aam_softmax(emb, params["aam"], labels, o.margin, o.scale)
            return loss, ({"aam": loss, "aam_acc": m["acc"]}, new_state)
        b = emb.shape[0] // views
        nce, m = info_nce(emb[:b], emb[b:2 * b], o.temperature)
        metrics = {"nce": nce, "nce_acc": m["nce_acc"]}
        loss = nce
        if self.objective == "pseudo":
            head = params["cluster_head"]
            ce, mc = softmax_ce(emb @ head["kernel"] + head["bias"], labels)   # both views: eq. 6
            loss = loss + o.ce_weight * ce
            metrics.update(ce=ce, ce_acc=mc["acc"])
        return loss, (metrics, new_state)

    # ---- embeddings --------------------------------------------------------------------
    def embed_features(self, params, model_state, feats: list[np.ndarray], frames_per_batch: int = 16384,
                       ) -> dict[str, np.ndarray]:
        """Whole-utterance embeddings (eval mode) in length buckets: {"speaker": (N, E),
        "fbank_stats": (N, 160) mean and std of the log filterbank, a no-training baseline}."""
        variables = {"params": params["encoder"], **model_state}
        fn = embed_fn(self.cfg)
        lengths = np.array([len(f) for f in feats])
        out = np.zeros((len(feats), self.cfg.embed_dim), np.float32)
        for plen, idx in length_buckets(lengths, frames_per_batch):
            rows = max(1, frames_per_batch // plen)
            x = np.zeros((rows, plen, self.cfg.input_dim), np.float32)
            mask = np.zeros((rows, plen), bool)
            for r, i in enumerate(idx):
                x[r, :lengths[i]] = feats[i]
                mask[r, :lengths[i]] = True
            mask[len(idx):, 0] = True                                          # unused rows: one dummy frame
            out[idx] = np.asarray(fn(variables, x, mask))[:len(idx)]
        stats = np.stack([np.concatenate([f.mean(0), f.std(0)]) for f in feats]).astype(np.float32)
        return {"speaker": out, "fbank_stats": stats}

    def embed(self, params, model_state, corpus):
        kept, feats = self._features(corpus)
        kept.table["duration"] = [len(f) * FRAME_SECONDS for f in feats]
        return kept, self.embed_features(params, model_state, feats)

    def embed_waves(self, params, model_state, waves):
        from jaxdis.data.features import features_for_waves

        return self.embed_features(params, model_state, features_for_waves(waves, "fbank"))

    def evaluate(self, params, model_state, step, workdir):
        """Verification (EER, minDCF) and 10 s speaker ID on the held-out voices."""
        from jaxdis.eval.speaker_id import speaker_id_f1
        from jaxdis.eval.verification import verify
        from jaxdis.methods.common import heldout_corpus

        if not self.config.eval.get("verify", True):
            return {}
        heldout = heldout_corpus(self.config)
        if len(heldout) == 0 or heldout.table["speaker"].nunique() < 2:
            return {}
        kept, emb = self.embed(params, model_state, heldout)
        spk = kept.table["speaker"].astype(str).to_numpy()
        out = {}
        for name, x in emb.items():
            v = verify(x, spk, max_trials=int(self.config.eval.max_trials))
            out[f"eer.{name}"], out[f"min_dcf.{name}"] = v["eer"], v["min_dcf"]
            if self.config.eval.speaker_id:
                res = speaker_id_f1(x, spk, kept.table["duration"].to_numpy(), budgets=(10,), repeats=3, seed=0)
                if res:
                    out[f"f1.{name}.10s"] = res[0].f1_mean
        out["eer"], out["min_dcf"] = out["eer.speaker"], out["min_dcf.speaker"]
        return out
