"""Learn2Diss joint training (§3.2, eq. 10): L = L_frame + L_utt + λ·L_MI.

- L_frame (g, eq. 3–4): masked k-means cluster prediction + pseudo-con on the masked
  frames of a crop; targets and their k-means come from jaxdis.methods.transformer.
- L_utt (h, eq. 5–7): InfoNCE between the two halves of the crop (non-overlapping 1 s
  views by default), plus CE on k-means pseudo-labels of an ECAPA teacher when
  ``utt_objective.name = "pseudo"``.
- L_MI (eq. 8): the group CLUB of ȳ_{i,t} (g's M layers summed) given z̄_{i,t} (eq. 9,
  first view only), negatives from the other utterances at the same frame index, padded
  frames masked. ``mi.reduce = "sum"`` sums over frames as eq. 8 (mean CLUB per frame ×
  mean real frames per utterance); ``"mean"`` averages.

One jitted step, one gradient. ``jaxdis.club.split_losses`` returns the CLUB estimate
computed with q_φ's parameters stopped (its gradient reaches g, h and A only) and q_φ's
negative log-likelihood on stopped ȳ, z̄ (its gradient reaches q_φ only); the loss is
their sum with the task losses, so q_φ maximises its likelihood while the encoders
minimise the bound. Three optimizers (``optim.frame``, ``optim.utt`` — which also
trains the A^l — and ``optim.q``), each with its own schedule and clipping, via
``optax.multi_transform``; the frozen extractor's parameters get no update. With λ = 0
q_φ still trains, so the MI-off run logs the same CLUB estimate for comparison.
"""

from __future__ import annotations

import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
from ml_collections import ConfigDict

from jaxdis import club
from jaxdis.losses import info_nce, softmax_ce
from jaxdis.masking import span_mask
from jaxdis.methods.base import Method
from jaxdis.methods.ecapa import length_buckets, model_config as ecapa_model_config
from jaxdis.methods.transformer import TransformerMethod, masked_mean, pseudo_con
from jaxdis.models.learn2diss import Learn2Diss
from jaxdis.models.transformer import frame_mask, is_frozen_path

log = logging.getLogger("jaxdis.learn2diss")

GROUPS = ("frame", "utt", "q")


def frame_method_config(config: ConfigDict) -> ConfigDict:
    """The config of the transformer method that g's targets, data and features come from:
    the frame encoder has N frozen + M trainable layers (Table 1)."""
    c = ConfigDict(config.to_dict())
    c.method = "transformer"
    m = config.model
    c.model = ConfigDict({**m.frame.to_dict(), "layers": int(m.frozen_layers) + int(m.trainable_layers),
                          "frozen_layers": int(m.frozen_layers)})
    c.objective = ConfigDict(config.frame_objective.to_dict())
    return c


class Learn2DissMethod(Method):
    name = "learn2diss"

    def __init__(self, config):
        super().__init__(config)
        self.frame_method = TransformerMethod(frame_method_config(config))
        self.frame_cfg = self.frame_method.cfg
        utt_input = config.model.utt_input
        self.utt_cfg = ecapa_model_config(config.model.utt)
        if utt_input == "features":
            n = int(config.model.frozen_layers)
            self.utt_cfg = self.utt_cfg.replace(input_dim=self.frame_cfg.feature_dim if n == 0 else self.frame_cfg.hidden)
        self.model = Learn2Diss(self.frame_cfg, self.utt_cfg, int(config.frame_objective.num_clusters), utt_input)
        q = config.model.q
        self.qnet = club.ClubNet(self.frame_cfg.hidden, hidden=int(q.hidden), layers=int(q.layers),
                                 variance=q.variance)
        self._cache: dict = {}

    # ---- data ------------------------------------------------------------------------
    def data(self):
        """Crops of ``data.crop_seconds`` from the training split. Everything ``init`` needs
        from disk (k-means targets, pre-trained runs, pseudo-labels) is prepared here, outside jit."""
        source = self.frame_method.data()
        self._loaded()
        self.pseudo_labels()
        return source

    def pseudo_labels(self) -> np.ndarray | None:
        """(N,) utterance clusters for ``utt_objective.name = "pseudo"`` (eq. 6's μ_i), from
        the ECAPA teacher run's embeddings of the training utterances; None otherwise."""
        o = self.config.utt_objective
        if o.name != "pseudo":
            return None
        if "pseudo" not in self._cache:
            from jaxdis import kmeans
            from jaxdis.train import restore

            _, tmethod, params, state = restore(o.teacher)
            (_, feats), _ = self.frame_method._splits()
            with jax.ensure_compile_time_eval():
                z = tmethod.embed_features(params, state, feats)["speaker"]
                z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
                _, labels = kmeans.fit_predict(jax.random.PRNGKey(self.config.seed), z, int(o.num_clusters),
                                               steps=int(o.kmeans_steps), batch_size=min(4096, len(z)))
            self._cache["pseudo"] = labels.astype(np.int32)
        return self._cache["pseudo"]

    # ---- parameters ------------------------------------------------------------------
    def init(self, rng, batch):
        k_model, k_q = jax.random.split(rng)
        x, mask = self.frame_method._inputs(batch)
        span = jnp.zeros((2, self.frame_cfg.num_frames(x.shape[1])), bool)
        variables = self.model.init({"params": k_model}, x[:2], mask[:2], span, train=False)
        params = dict(variables["params"])
        params["q"] = self.qnet.init(k_q, jnp.zeros((1, self.utt_cfg.embed_dim)))["params"]
        targets, teacher = self.frame_method.prepare_targets()
        state = {"batch_stats": variables["batch_stats"], "targets": jax.tree.map(jnp.asarray, targets)}
        if self.config.get("mi_warmup_steps", 0):
            state["mi_calls"] = jnp.zeros((), jnp.int32)                      # loss calls so far (λ's ramp)
        if teacher:
            state["teacher"] = jax.tree.map(jnp.asarray, teacher)
        labels = self.pseudo_labels()
        if labels is not None:
            q = int(self.config.utt_objective.num_clusters)
            e = self.utt_cfg.embed_dim
            params["cluster_head"] = {"kernel": jax.random.normal(k_q, (e, q)) / np.sqrt(e), "bias": jnp.zeros((q,))}
            state["utt_labels"] = jnp.asarray(labels)
        return self._init_from_runs(params, state)

    def _loaded(self) -> dict:
        """Pre-trained parameters named by the config, restored once, eagerly (orbax cannot
        restore under the trainer's jit): ``model.frame.init_from_hf`` (a transformers
        HuBERT/WavLM directory for f + g), ``init.frame`` (a transformer workdir: g and its
        head), ``init.utt`` (an ECAPA workdir: h and its BatchNorm statistics)."""
        if "loaded" not in self._cache:
            from jaxdis.train import restore

            out = {}
            hf = self.config.model.frame.get("init_from_hf", "")
            if hf:
                from jaxdis.convert.transformers_hubert import load_pretrained

                out["hf"] = load_pretrained(hf)[1]
            if self.config.init.get("frame", ""):
                out["frame"] = restore(self.config.init.frame)[2]
            if self.config.init.get("utt", ""):
                _, _, p, s = restore(self.config.init.utt)
                out["utt"] = (p["encoder"], s["batch_stats"])
            self._cache["loaded"] = out
        return self._cache["loaded"]

    def _init_from_runs(self, params, state):
        """Replaces the fresh parameters by the pre-trained ones of ``_loaded``."""
        loaded = self._loaded()
        if "hf" in loaded:
            from jaxdis.convert.transformers_hubert import merge_params

            params["frame"] = {**params["frame"], "encoder": merge_params(params["frame"]["encoder"], loaded["hf"])}
        if "frame" in loaded:
            params["frame"] = _checked(params["frame"], loaded["frame"], self.config.init.frame)
        if "utt" in loaded:
            p, s = loaded["utt"]
            params["utt"] = _checked(params["utt"], p, self.config.init.utt)
            state["batch_stats"] = {**state["batch_stats"],
                                    "utt": _checked(state["batch_stats"]["utt"], s, self.config.init.utt)}
        return params, state

    # ---- loss ----------------------------------------------------------------------------
    def loss(self, params, model_state, batch, rng):
        c = self.config
        fo, uo = c.frame_objective, c.utt_objective
        x, mask = self.frame_method._inputs(batch)
        k_mask, k_drop, k_pc, k_mi = jax.random.split(rng, 4)
        b, t = x.shape[0], self.frame_cfg.num_frames(x.shape[1])
        span = span_mask(k_mask, frame_mask(self.frame_cfg, mask, b, t), fo.mask_prob, fo.mask_span, fo.min_spans)
        labels = self.frame_method.targets(model_state, x, mask)              # (B, T)
        model_params = {k: params[k] for k in ("frame", "utt", "agg")}
        out, updates = self.model.apply({"params": model_params, "batch_stats": model_state["batch_stats"]},
                                        x, mask, span, train=True, rngs={"dropout": k_drop}, mutable=["batch_stats"])
        new_state = {**model_state, "batch_stats": updates["batch_stats"]}

        # L_frame (eq. 3–4) on the masked frames.
        ce = optax.softmax_cross_entropy_with_integer_labels(out["logits"], labels)
        hit = (jnp.argmax(out["logits"], -1) == labels).astype(jnp.float32)
        l_frame = masked_mean(ce, span)
        metrics = {"frame_ce": l_frame, "frame_acc": masked_mean(hit, span)}
        if fo.pc_weight:
            pc = pseudo_con(out["last"], labels, span, k_pc, fo.tau, fo.pc_frames, fo.pc_denominator, fo.pc_normalize)
            l_frame = l_frame + fo.pc_weight * pc
            metrics["pseudo_con"] = pc

        # L_utt (eq. 5–7) between the two views.
        emb = out["emb"]
        l_utt, m = info_nce(emb[:b], emb[b:], uo.temperature)
        metrics.update(nce=l_utt, nce_acc=m["nce_acc"])
        if "utt_labels" in model_state:
            head = params["cluster_head"]
            ce_u, mc = softmax_ce(emb @ head["kernel"] + head["bias"],
                                  jnp.tile(model_state["utt_labels"][batch["index"]], 2))
            l_utt = l_utt + uo.ce_weight * ce_u
            metrics.update(utt_ce=ce_u, utt_ce_acc=mc["acc"])

        # L_MI (eq. 8) and q_φ's likelihood (eq. 2), gradients routed by split_losses.
        mi, q_nll, m = club.split_losses(self.qnet, params["q"], out["zbar"], out["ybar"], out["mi_mask"],
                                         c.mi.estimator, k_mi)
        frames = jnp.sum(out["mi_mask"]) / b
        l_mi = mi * frames if c.mi.reduce == "sum" else mi
        weight = self._mi_weight(new_state, model_state)
        objective = l_frame + l_utt + weight * l_mi                           # eq. 10
        metrics.update(m, L_frame=l_frame, L_utt=l_utt, L_MI=l_mi, objective=objective, mi_weight=weight,
                       q_loglik_per_dim=m["q_loglik"] / self.frame_cfg.hidden, mi_frames=frames)
        return objective + q_nll, (metrics, new_state)

    def _mi_weight(self, new_state, model_state):
        """λ of eq. 10; with ``mi_warmup_steps`` it ramps linearly from 0 over those steps, so
        q_φ fits the encoders before its (then meaningless) CLUB estimate drives them. Counts
        loss calls in the model state (``grad_accum`` per step); updates `new_state`."""
        c = self.config
        if "mi_calls" not in model_state:
            return jnp.float32(c.mi_weight)
        calls = model_state["mi_calls"] + 1
        new_state["mi_calls"] = calls
        ramp = calls.astype(jnp.float32) / (int(c.mi_warmup_steps) * int(c.train.get("grad_accum", 1)))
        return c.mi_weight * jnp.minimum(1.0, ramp)

    # ---- optimizers ------------------------------------------------------------------------
    def _group(self, path) -> str:
        keys = [getattr(p, "key", str(p)) for p in path]
        if keys[0] == "frame":
            return "frozen" if keys[1] == "encoder" and is_frozen_path(keys[2:], self.frame_cfg) else "frame"
        if keys[0] == "q":
            return "q"
        return "utt"                                                          # utt, agg (A^l), cluster_head

    def optimizer(self, total_steps):
        from jaxdis.train.optim import make_optimizer

        txs = {g: make_optimizer(self.config.optim[g], total_steps) for g in GROUPS}
        txs["frozen"] = optax.set_to_zero()
        return optax.multi_transform(txs, lambda p: jax.tree_util.tree_map_with_path(lambda k, _: self._group(k), p))

    def learning_rates(self, step):
        from jaxdis.train.optim import make_schedule

        return {f"lr/{g}": float(make_schedule(self.config.optim[g], self.config.train.steps)(step)) for g in GROUPS}

    # ---- embeddings ------------------------------------------------------------------------
    @functools.cached_property
    def _encode(self):
        model = self.model

        def encode(params, model_state, x, mask):
            variables = {"params": {k: params[k] for k in ("frame", "utt", "agg")},
                         "batch_stats": model_state["batch_stats"]}
            return model.apply(variables, x, mask, method=Learn2Diss.encode)

        return jax.jit(encode)

    def embed_features(self, params, model_state, feats: list[np.ndarray], frames_per_batch: int = 8192,
                       ) -> dict[str, np.ndarray]:
        """Whole-utterance representations in length buckets (eval mode; padding changes
        nothing): {"frame": mean ȳ, "frame_last": mean y^M, "utt": z^L, "utt_frames": mean z̄}."""
        stack = self.frame_cfg.hop
        lengths = np.array([len(f) for f in feats])
        out: dict[str, np.ndarray] = {}
        for plen, idx in length_buckets(lengths, frames_per_batch):
            plen = -(-plen // stack) * stack
            rows = max(1, frames_per_batch // plen)
            x = np.zeros((rows, plen, feats[0].shape[1]), np.float32)
            mask = np.zeros((rows, plen), bool)
            for r, i in enumerate(idx):
                x[r, :lengths[i]], mask[r, :lengths[i]] = feats[i], True
            mask[len(idx):, :stack] = True                                    # unused rows: one dummy frame
            res = jax.device_get(self._encode(params, model_state, *self.frame_method._inputs({"x": x, "mask": mask})))
            for k, v in res.items():
                out.setdefault(k, np.zeros((len(feats), v.shape[-1]), np.float32))[idx] = v[:len(idx)]
        return out

    def embed(self, params, model_state, corpus):
        kept, feats = self.frame_method._features(corpus)
        return kept, self.embed_features(params, model_state, feats)

    def embed_waves(self, params, model_state, waves):
        if self.frame_cfg.frontend == "fbank":
            from jaxdis.data.features import features_for_waves

            feats = features_for_waves(waves, "fbank")
        else:
            feats = [np.asarray(w, np.float32)[:, None] for w in waves]
        return self.embed_features(params, model_state, feats)


def _checked(target, loaded, src: str):
    """`loaded` as jnp arrays, after checking it has `target`'s structure and shapes."""
    t_shapes = jax.tree.map(lambda a: tuple(a.shape), target)
    l_shapes = jax.tree.map(lambda a: tuple(np.shape(a)), loaded)
    if t_shapes != l_shapes:
        raise ValueError(f"{src}: its parameters do not fit this model (check model.frame / model.utt against the run)")
    return jax.tree.map(jnp.asarray, loaded)
