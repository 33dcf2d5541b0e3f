"""TopK SAEs on any (N, d) array, several at once in one compiled step.

``config.model.saes`` lists the SAEs: ``(k, seed)`` (latent count ``model.n_latents``)
or ``(n_latents, k, seed)``. SAEs with the same latent count are stacked on a leading
axis and trained by ``vmap`` (k is an argument, masked inside a static top-k_max); each
latent count is one such group. The loss is the sum of the per-SAE losses: every SAE
only sees the gradient of its own term, and Adam is per-element, so training them
together equals training them apart. Metrics per SAE: ``fvu/k32_s0``, ``l0/…``,
``dead_frac/…``, ``auxk/…`` (``L4096_k32_s0`` for a latent count other than the default).

Input transform: ``data.normalize`` ("l2": every row to unit norm; "none") and then
``data.standardize`` (per-dimension, with statistics of the normalised training rows).
The choice is read back from the run's saved config, the statistics from model_state, so
``load_saes`` (sae-probe, sae-steer) applies the same transform; see ``TrainedSAE`` for
how an L2 SAE's reconstructions are put back in the raw space.

model_state: ``since_fired`` {group: (S, L) int32} samples since each latent last fired
(dead = more than ``model.dead_window``), and ``norm`` {mean, std} when
``data.standardize`` is on, so a checkpoint alone rebuilds the input transform.
"""

from __future__ import annotations

import logging
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxdis.data.batching import ArraySource
from jaxdis.methods.base import Method
from jaxdis.models.sae import (NORMALIZE, TopKSAE, TrainedSAE, fvu, init_sae, l2_rows, stacked_sae_loss,
                               unit_norm_decoder)

log = logging.getLogger("jaxdis.sae")


def load_array(path: str) -> np.ndarray:
    """(N, d) float32 from .npy or parquet (all numeric columns, or one list column)."""
    try:
        from jaxdis.embeddings import load_embeddings
    except ImportError:
        load_embeddings = None
    if load_embeddings is not None:
        return np.asarray(load_embeddings(path), np.float32)
    if path.endswith(".npy"):
        return np.load(path).astype(np.float32)
    import pandas as pd

    df = pd.read_parquet(path)
    if df.shape[1] == 1 and df.dtypes.iloc[0] == object:
        return np.stack(df.iloc[:, 0].to_numpy()).astype(np.float32)
    return df.select_dtypes("number").to_numpy(np.float32)


def synthetic_embeddings(n: int, d: int, n_features: int, active: int, seed: int) -> np.ndarray:
    """Sparse sums of random unit directions plus noise: a known-sparse test set."""
    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((n_features, d)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    idx = np.stack([rng.choice(n_features, active, replace=False) for _ in range(n)])  # (N, a)
    coef = rng.exponential(1.0, (n, active)).astype(np.float32)
    x = np.einsum("na,nad->nd", coef, dirs[idx]) + 0.5
    return (x + 0.01 * rng.standard_normal((n, d))).astype(np.float32)


def sae_specs(model_cfg) -> list[tuple[str, int, int, int]]:
    """[(name, n_latents, k, seed)] from ``model.saes``, in config order."""
    specs = []
    for entry in model_cfg.saes:
        entry = tuple(int(v) for v in entry)
        n_latents, k, seed = (int(model_cfg.n_latents), *entry) if len(entry) == 2 else entry
        name = f"k{k}_s{seed}" if n_latents == int(model_cfg.n_latents) else f"L{n_latents}_k{k}_s{seed}"
        specs.append((name, n_latents, k, seed))
    names = [s[0] for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"model.saes has duplicates: {names}")
    return specs


def group_specs(specs) -> dict[str, list[tuple[str, int, int, int]]]:
    """SAEs by latent count: {"L2048": [(name, L, k, seed), ...]} (one vmapped stack each)."""
    groups: dict[str, list] = {}
    for spec in specs:
        groups.setdefault(f"L{spec[1]}", []).append(spec)
    return groups


class SAEMethod(Method):
    name = "sae"

    def __init__(self, config):
        super().__init__(config)
        self.specs = sae_specs(config.model)
        self.groups = group_specs(self.specs)
        self._x: np.ndarray | None = None
        self.normalize = str(config.data.get("normalize", "none") or "none")
        if self.normalize not in NORMALIZE:
            raise ValueError(f"data.normalize must be one of {NORMALIZE}, got {self.normalize!r}")

    # -- data -------------------------------------------------------------------------
    def array(self) -> np.ndarray:
        """The raw training array (N, d), loaded once."""
        if self._x is None:
            d = self.config.data
            if d.embeddings:
                self._x = load_array(os.path.expanduser(d.embeddings))
            elif d.get("synthetic_n", 0):
                self._x = synthetic_embeddings(d.synthetic_n, d.synthetic_dim, d.synthetic_features,
                                               d.synthetic_active, d.synthetic_seed)
            else:
                raise ValueError("set --config.data.embeddings=PATH.npy (an (N, d) array, .npy or parquet)")
            if self._x.ndim != 2 or not np.isfinite(self._x).all():
                raise ValueError(f"embeddings must be a finite (N, d) array, got shape {self._x.shape}")
        return self._x

    def norm_stats(self) -> dict[str, np.ndarray] | None:
        """Per-dimension mean and std of the (normalised) training array, when data.standardize is on."""
        if not self.config.data.get("standardize", False):
            return None
        x = self.array()
        x = l2_rows(x) if self.normalize == "l2" else x
        return {"mean": x.mean(0), "std": np.maximum(x.std(0), 1e-6 * max(float(x.std()), 1e-12))}

    def data(self) -> ArraySource:
        return ArraySource({"x": self.array()}, self.config.train.batch_size, self.config.seed)

    # -- model ------------------------------------------------------------------------
    def module(self, group: str) -> TopKSAE:
        specs = self.groups[group]
        n_latents = specs[0][1]
        d = self.array().shape[1]
        k_aux = int(self.config.model.k_aux)
        k_aux = d // 2 if k_aux < 0 else k_aux
        fractions = self.config.model.get("matryoshka", ()) or ()
        prefixes = tuple(sorted({max(1, int(round(f * n_latents))) for f in fractions} - {n_latents}))
        return TopKSAE(d=d, n_latents=n_latents, k_max=max(s[2] for s in specs), k_aux=min(k_aux, n_latents),
                       prefixes=prefixes, sparse_impl=self.config.model.get("sparse_impl", "auto"))

    def _ks(self, group: str) -> jax.Array:
        return jnp.array([s[2] for s in self.groups[group]], jnp.int32)  # (S,)

    def _standardize(self, x: jax.Array, model_state) -> jax.Array:
        """Raw batch → the SAE's input: L2-normalised rows (data.normalize), then standardised."""
        if self.normalize == "l2":
            x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        if "norm" not in model_state:
            return x
        return (x - model_state["norm"]["mean"]) / model_state["norm"]["std"]

    def init(self, rng, batch):
        stats = self.norm_stats()
        model_state = {"since_fired": {}}
        if stats is not None:
            model_state["norm"] = {k: jnp.asarray(v, jnp.float32) for k, v in stats.items()}
        x = self._standardize(batch["x"].astype(jnp.float32), model_state)
        params = {}
        for group, specs in self.groups.items():
            model = self.module(group)
            rngs = jnp.stack([jax.random.fold_in(rng, s[3]) for s in specs])
            # Same (L, seed) → same initial weights whatever k: k comparisons are paired.
            params[group] = jax.vmap(lambda r: init_sae(model, r, x, self.config.model.median_iters))(rngs)
            model_state["since_fired"][group] = jnp.zeros((len(specs), model.n_latents), jnp.int32)
        return params, model_state

    def loss(self, params, model_state, batch, rng):
        del rng
        x = self._standardize(batch["x"].astype(jnp.float32), model_state)
        m = self.config.model
        total, metrics, since = 0.0, {}, {}
        for group, specs in self.groups.items():
            model = self.module(group)
            losses, mets, since[group] = stacked_sae_loss(
                model, params[group], x, self._ks(group), model_state["since_fired"][group],
                int(m.dead_window), float(m.aux_coef))
            total = total + losses.sum()
            for key, values in mets.items():
                for i, spec in enumerate(specs):
                    metrics[f"{key}/{spec[0]}"] = values[i]
        return total, (metrics, {**model_state, "since_fired": since})

    def optimizer(self, total_steps):
        return unit_norm_decoder(super().optimizer(total_steps))

    # -- evaluation -------------------------------------------------------------------
    def trained(self, params, model_state) -> list[TrainedSAE]:
        """Each SAE alone, as host arrays with its input transform."""
        norm = model_state.get("norm") if isinstance(model_state, dict) else None
        mean = None if norm is None else np.asarray(norm["mean"], np.float32)
        std = None if norm is None else np.asarray(norm["std"], np.float32)
        out = []
        for group, specs in self.groups.items():
            stacked = jax.tree.map(np.asarray, params[group])
            for i, (name, _, k, seed) in enumerate(specs):
                out.append(TrainedSAE(name, k, {kk: v[i] for kk, v in stacked.items()}, mean, std, seed,
                                      self.normalize))
        return out

    def evaluate(self, params, model_state, step, workdir):
        """FVU (in the SAE's input space) and L0 over the whole array; dead = fires on no row of it."""
        x = self.array()
        results = {}
        for sae in self.trained(params, model_state):
            z = sae.latents(x)
            xs = sae.prepare(x)
            x_hat = z @ sae.decoder + sae.params["b_pre"]
            results[f"fvu/{sae.name}"] = float(fvu(jnp.asarray(xs), jnp.asarray(x_hat)))
            results[f"l0/{sae.name}"] = float((z > 0).sum(1).mean())
            results[f"dead_frac/{sae.name}"] = float(((z > 0).sum(0) == 0).mean())
        return results


def load_saes(workdir: str) -> list[TrainedSAE]:
    """Every SAE of a trained workdir (made by ``train.py --config configs/sae.py``)."""
    from jaxdis.train import restore

    config, method, params, model_state = restore(workdir)
    if config.method != "sae":
        raise ValueError(f"{workdir} holds a {config.method!r} run, not an SAE")
    return method.trained(params, model_state)

