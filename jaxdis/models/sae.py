"""TopK sparse autoencoders (Gao et al. 2024) for any (N, d) activations.

    z = ReLU(TopK(W_enc (x − b_pre) + b_enc))          # (B, L), k non-zeros per row
    x̂ = Σ_{j ∈ active} z_j W_dec[j] + b_pre            # (B, d), decoded by gathering k rows

W_dec is stored as (L, d): "decoder column j" of the paper is row ``W_dec[j]`` here, kept
unit-norm by :func:`unit_norm_decoder` (an optax wrapper). ``k`` is an *argument*, not a
shape: the top ``k_max`` entries are taken and those ranked ≥ k are masked to zero, so
SAEs with different k share one compiled step under ``vmap``.

AuxK (dead-latent revival): the top ``k_aux`` pre-activations of the dead latents
reconstruct the residual e = x − x̂ with its gradient stopped, *without* b_pre (e already
excludes it; sparsify and SAELens add the bias a second time). Loss ‖e − ê‖² / ‖e‖².
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdis.models.sparse_rows import gather_dot, gather_sum

PyTree = Any


# ---------------------------------------------------------------------------------------
# Initialisation helpers


def geometric_median(x: jax.Array, iters: int = 100, eps: float = 1e-8) -> jax.Array:
    """Weiszfeld's algorithm: argmin_m Σ_i ‖x_i − m‖, starting from the mean.

    The weights 1/‖x_i − m‖ are recomputed from the data each iteration (not multiplied
    into the previous weights, a bug in one JAX port that drifts towards a single point).
    """
    x = x.astype(jnp.float32)  # (N, d)

    def step(m, _):
        w = 1.0 / jnp.maximum(jnp.linalg.norm(x - m, axis=-1), eps)  # (N,)
        return (w[:, None] * x).sum(0) / w.sum(), None

    m, _ = jax.lax.scan(step, x.mean(0), None, length=iters)
    return m  # (d,)


def _unit_rows_init(rng: jax.Array, shape: tuple[int, int], dtype=jnp.float32) -> jax.Array:
    """Random (L, d) matrix with unit-norm rows: isotropic directions."""
    w = jax.random.normal(rng, shape, dtype)
    return w / jnp.linalg.norm(w, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------
# The module


class TopKSAE(nn.Module):
    """One TopK SAE. ``k`` (≤ k_max) is passed at call time so it can be vmapped.

    Parameters: b_pre (d,), W_enc (L, d) (row j is latent j's encoder direction, stored
    like W_dec so both gather rows), b_enc (L,), W_dec (L, d) unit-norm rows.
    """

    d: int            # input width
    n_latents: int    # L
    k_max: int        # static size of the top-k; entries ranked ≥ k are zeroed
    k_aux: int = 0    # AuxK width (≈ d/2); 0 disables AuxK
    prefixes: tuple[int, ...] = ()  # Matryoshka: nested dictionary sizes < L that must reconstruct alone
    sparse_impl: str = "auto"       # gathers/scatters: "scan" | "batched" | "auto" (jaxdis.models.sparse_rows)

    def setup(self):
        self.b_pre = self.param("b_pre", nn.initializers.zeros, (self.d,))
        self.W_enc = self.param("W_enc", _unit_rows_init, (self.n_latents, self.d))
        self.b_enc = self.param("b_enc", nn.initializers.zeros, (self.n_latents,))
        # W_dec = W_encᵀ at init (Gao et al.; same (L, d) layout here): rows unit-norm.
        self.W_dec = self.param("W_dec", lambda _: self.W_enc)

    def pre_activations(self, x: jax.Array) -> jax.Array:
        """Dense (B, L) pre-activations (only used to choose the top-k, gradient-free)."""
        return (x - self.b_pre) @ self.W_enc.T + self.b_enc

    def select(self, x: jax.Array, idx: jax.Array) -> jax.Array:
        """Pre-activations of the chosen latents only, (B, K): differentiable and sparse.

        Written W_enc[j]·x + (b_enc − W_enc b_pre)[j] so b_pre's gradient goes through an
        (L,) vector; the (B, d) cotangent of the data x is then unused and compiled away.
        """
        offset = self.b_enc - self.W_enc @ self.b_pre  # (L,)
        return gather_dot(self.W_enc, idx, x, self.sparse_impl) + jnp.take(offset, idx)

    def encode(self, x: jax.Array, k: jax.Array | int) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(values (B, k_max), indices (B, k_max), dense pre-activations (B, L), no gradient).

        The top-k is chosen on the dense pre-activations with the gradient stopped; the k
        winners are recomputed sparsely, so the backward pass scatters B·k rows instead of
        transposing a (B, L) matrix. Values ranked ≥ k are zero.
        """
        pre = jax.lax.stop_gradient(self.pre_activations(x))
        _, idx = jax.lax.top_k(pre, self.k_max)  # sorted descending
        keep = jnp.arange(self.k_max) < k
        return jnp.where(keep, jax.nn.relu(self.select(x, idx)), 0.0), idx, pre

    def decode(self, vals: jax.Array, idx: jax.Array, bias: bool = True) -> jax.Array:
        """Sparse decode: Σ_j vals_j W_dec[idx_j] (+ b_pre), gathering only active rows. (B, d)."""
        out = gather_sum(self.W_dec, idx, vals, self.sparse_impl)
        return out + self.b_pre if bias else out

    def auxk(self, x: jax.Array, pre: jax.Array, dead: jax.Array, cap: int = 0) -> jax.Array:
        """AuxK reconstruction (no b_pre) from the top-k_aux dead latents. (B, d).

        cap > 0: search only the first `cap` dead latents (exact whenever at most `cap` are
        dead; ``stacked_sae_loss`` only takes this path then). Picks beyond the dead
        latents (fewer dead than k_aux) are zeroed.
        """
        if cap and cap < self.n_latents:
            cand = jnp.nonzero(dead, size=cap, fill_value=0)[0]  # (C,)
            valid = jnp.arange(cap) < dead.sum()
            top, j = jax.lax.top_k(jnp.where(valid, jnp.take(pre, cand, axis=1), -jnp.inf), self.k_aux)
            idx = jnp.take(cand, j)  # (B, k_aux)
        else:
            top, idx = jax.lax.top_k(jnp.where(dead, pre, -jnp.inf), self.k_aux)
        vals = jnp.where(jnp.isfinite(top), jax.nn.relu(self.select(x, idx)), 0.0)
        return self.decode(vals, idx, bias=False)

    def __call__(self, x: jax.Array, k: jax.Array | int) -> tuple[jax.Array, dict[str, jax.Array]]:
        vals, idx, pre = self.encode(x, k)
        return self.decode(vals, idx), {"vals": vals, "idx": idx, "pre": pre}


def init_sae(model: TopKSAE, rng: jax.Array, x: jax.Array, median_iters: int = 100) -> PyTree:
    """Parameters with b_pre at the geometric median of the sample `x` (B, d)."""
    params = model.init(rng, x[:1], model.k_max)["params"]
    return {**params, "b_pre": geometric_median(x, median_iters).astype(params["b_pre"].dtype)}


# ---------------------------------------------------------------------------------------
# Loss, metrics and dead-latent tracking


def fvu(x: jax.Array, x_hat: jax.Array) -> jax.Array:
    """Fraction of variance unexplained: ‖x − x̂‖² / ‖x − mean(x)‖² over the batch."""
    return jnp.sum((x - x_hat) ** 2) / jnp.maximum(jnp.sum((x - x.mean(0)) ** 2), 1e-12)


def fired_latents(vals: jax.Array, idx: jax.Array, n_latents: int) -> jax.Array:
    """(L,) bool: which latents were active (> 0) for some row of the batch."""
    return jnp.zeros((n_latents,), bool).at[idx.reshape(-1)].max(vals.reshape(-1) > 0)


def aux_cap(model: TopKSAE) -> int:
    """How many dead latents the compact AuxK path searches (≥ k_aux, ≤ L)."""
    return min(model.n_latents, max(2 * model.k_aux, model.n_latents // 8))


def _main_terms(model: TopKSAE, params: PyTree, x: jax.Array, k, since_fired: jax.Array, dead_window: int):
    """Reconstruction loss, metrics, new counters, and what AuxK needs (x̂, pre-activations, dead).

    With ``model.prefixes`` (Matryoshka): the loss is the mean FVU of the reconstructions
    by the active latents with index < m, for each prefix m and the full dictionary.
    """
    m = model.bind({"params": params})
    vals, idx, pre = m.encode(x, k)
    x_hat = m.decode(vals, idx)  # (B, d)
    dead = since_fired > dead_window  # (L,) from the counters before this batch
    metrics = {"fvu": fvu(x, x_hat), "l0": jnp.mean(jnp.sum(vals > 0, axis=-1).astype(jnp.float32)),
               "dead_frac": jnp.mean(dead.astype(jnp.float32))}
    recon = metrics["fvu"]
    if model.prefixes:
        parts = [fvu(x, m.decode(jnp.where(idx < size, vals, 0.0), idx)) for size in model.prefixes]
        for size, part in zip(model.prefixes, parts):
            metrics[f"fvu_first{size}"] = part
        recon = (sum(parts) + recon) / (len(parts) + 1)
    fired = fired_latents(vals, idx, model.n_latents)
    new_since = jnp.where(fired, 0, jnp.minimum(since_fired + x.shape[0], jnp.iinfo(jnp.int32).max // 2))
    return recon, metrics, new_since.astype(since_fired.dtype), (x_hat, pre, dead)


def _aux_term(model: TopKSAE, params: PyTree, x: jax.Array, x_hat: jax.Array, pre: jax.Array, dead: jax.Array,
              mode: str) -> jax.Array:
    """AuxK loss ‖e − ê‖² / ‖e‖² with e = x − x̂ stopped; 0 when nothing is dead."""
    if mode == "off":
        return jnp.zeros((), x.dtype)
    e = jax.lax.stop_gradient(x - x_hat)  # (B, d) residual; b_pre is inside x̂ already
    e_hat = model.bind({"params": params}).auxk(x, pre, dead, cap=aux_cap(model) if mode == "compact" else 0)
    aux = jnp.sum((e - e_hat) ** 2) / jnp.maximum(jnp.sum(e ** 2), 1e-12)
    return jnp.where(dead.any(), aux, 0.0)


def sae_loss(model: TopKSAE, params: PyTree, x: jax.Array, k: jax.Array | int, since_fired: jax.Array,
             dead_window: int, aux_coef: float = 1 / 32,
             aux_mode: str = "full") -> tuple[jax.Array, dict[str, jax.Array], jax.Array]:
    """Loss of one SAE on a batch: FVU + aux_coef · AuxK, plus metrics and the new counters.

    since_fired: (L,) samples seen since each latent last fired; dead = > dead_window.
    aux_mode: "full" (exact), "compact" (exact if ≤ aux_cap dead) or "off" (no dead latent).
    Returns (loss, metrics, new since_fired).
    """
    loss, metrics, new_since, (x_hat, pre, dead) = _main_terms(model, params, x, k, since_fired, dead_window)
    if model.k_aux:
        metrics["auxk"] = _aux_term(model, params, x, x_hat, pre, dead, aux_mode)
        loss = loss + aux_coef * metrics["auxk"]
    return loss, metrics, new_since


def stacked_sae_loss(model: TopKSAE, params: PyTree, x: jax.Array, ks: jax.Array, since_fired: jax.Array,
                     dead_window: int, aux_coef: float = 1 / 32):
    """S SAEs of one shape on the same batch: params with a leading (S,) axis, ks (S,),
    since_fired (S, L). Returns (losses (S,), metrics {name: (S,)}, new since_fired).

    The AuxK path is chosen once for the stack with ``lax.switch`` (outside the vmap, so
    only one branch runs): none when nothing is dead, the compact search while at most
    ``aux_cap`` latents are dead in any SAE, the full one otherwise. All three are exact.
    """
    main = lambda p, k, s: _main_terms(model, p, x, k, s, dead_window)
    losses, metrics, new_since, (x_hat, pre, dead) = jax.vmap(main)(params, ks, since_fired)
    if model.k_aux:
        def branch(mode):
            fn = lambda p, xh, pr, dd: _aux_term(model, p, x, xh, pr, dd, mode)
            return lambda: jax.vmap(fn)(params, x_hat, pre, dead)

        n_dead = jnp.max(jnp.sum(dead, axis=-1))
        cap = aux_cap(model)
        if cap >= model.n_latents:
            aux = jax.lax.switch((n_dead > 0).astype(jnp.int32), [branch("off"), branch("full")])
        else:
            index = (n_dead > 0).astype(jnp.int32) + (n_dead > cap).astype(jnp.int32)
            aux = jax.lax.switch(index, [branch("off"), branch("compact"), branch("full")])
        metrics["auxk"] = aux
        losses = losses + aux_coef * aux
    return losses, metrics, new_since


# ---------------------------------------------------------------------------------------
# Unit-norm decoder as an optax transformation


def _is_decoder(path) -> bool:
    last = path[-1]
    return getattr(last, "key", getattr(last, "name", None)) == "W_dec"


def _unit_rows(w: jax.Array) -> jax.Array:
    return w / jnp.maximum(jnp.linalg.norm(w, axis=-1, keepdims=True), 1e-12)


def unit_norm_decoder(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """Wraps an optimizer so every ``W_dec`` leaf (…, L, d) keeps unit-norm rows.

    Before the inner update, the gradient component parallel to each row is removed
    (g ← g − (g·w) w: a step along w would only change its norm, which is then undone).
    After it, the updated rows are renormalised and the update is rewritten as
    normalised − params, so the trainer's ``apply_updates`` lands on the unit sphere.
    """

    def init(params):
        return inner.init(params)

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("unit_norm_decoder needs params")

        def project(path, g, w):
            return g - jnp.sum(g * w, axis=-1, keepdims=True) * w if _is_decoder(path) else g

        def renorm(path, u, w):
            return _unit_rows(w + u) - w if _is_decoder(path) else u

        grads = jax.tree_util.tree_map_with_path(project, updates, params)
        updates, state = inner.update(grads, state, params)
        return jax.tree_util.tree_map_with_path(renorm, updates, params), state

    return optax.GradientTransformation(init, update)


# ---------------------------------------------------------------------------------------
# A trained SAE for analysis (host side)


NORMALIZE = ("none", "l2")


def l2_rows(x: np.ndarray) -> np.ndarray:
    """Each row divided by its Euclidean norm (rows of zeros stay zero)."""
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclasses.dataclass
class TrainedSAE:
    """One trained SAE with its input transform; numpy in, numpy out, chunked.

    Input transform, in order: ``normalize`` ("l2": each row to unit norm) then per-dimension
    standardisation (``mean``/``std``, computed on the normalised rows). The SAE sees
    ``prepare(x)``. ``decode`` undoes the standardisation; an L2 row norm cannot be
    recovered from the latents, so ``decode(z)`` is a reconstruction of the *unit-norm*
    row, and ``decode(z, like=x)`` puts it back at the norms of the raw rows ``x`` the
    latents came from (the raw space: FVU, saved reconstructions, steering). Cosine
    scoring (EER) is scale-free, so it is the same either way.
    """

    name: str                              # as in its run's metrics (k32_s0)
    k: int
    params: dict[str, np.ndarray]          # b_pre, W_enc, b_enc, W_dec of this SAE alone
    mean: np.ndarray | None = None         # per-dimension standardisation (None: none)
    std: np.ndarray | None = None
    seed: int = 0
    normalize: str = "none"                # "l2": rows to unit norm before standardisation
    run: str = ""                          # qualifies the label where two runs' SAEs share one

    def __post_init__(self):
        if self.normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {NORMALIZE}, got {self.normalize!r}")

    @property
    def label(self) -> str:
        """L2048_k32_s0, unique within a run; ``run_L2048_k32_s0`` when ``run`` is set."""
        base = f"L{self.n_latents}_k{self.k}_s{self.seed}"
        return f"{self.run}_{base}" if self.run else base

    @property
    def n_latents(self) -> int:
        return int(self.params["W_dec"].shape[0])

    @property
    def d(self) -> int:
        return int(self.params["W_dec"].shape[1])

    @property
    def decoder(self) -> np.ndarray:
        """(L, d) unit-norm decoder directions, in the standardised space."""
        return np.asarray(self.params["W_dec"])

    def raw_direction(self, j: int) -> np.ndarray:
        """(d,) what one unit of latent j adds to an unstandardised input row (for an L2
        SAE: to the unit-norm row; times the row's norm in the raw space)."""
        w = np.asarray(self.params["W_dec"][j], np.float32)
        return w if self.std is None else w * self.std

    def _model(self) -> TopKSAE:
        return TopKSAE(self.d, self.n_latents, self.k)

    def normalize_rows(self, x: np.ndarray) -> np.ndarray:
        """Raw rows → the unstandardised space the SAE works in (unit norm for L2)."""
        x = np.asarray(x, np.float32)
        return l2_rows(x) if self.normalize == "l2" else x

    def row_scale(self, x: np.ndarray) -> np.ndarray:
        """(N, 1) factor from normalize_rows' space back to raw rows (their norms for L2; 1)."""
        x = np.asarray(x, np.float32)
        if self.normalize != "l2":
            return np.ones((len(x), 1), np.float32)
        return np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

    def standardize(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        return x if self.mean is None else (x - self.mean) / self.std

    def unstandardize(self, x: np.ndarray) -> np.ndarray:
        return x if self.mean is None else x * self.std + self.mean

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """Raw rows → the SAE's input (normalised, then standardised)."""
        return self.standardize(self.normalize_rows(x))

    def _chunks(self, fn, x: np.ndarray, chunk: int) -> np.ndarray:
        """fn over fixed-size chunks (the last one zero-padded: one compile)."""
        chunk = min(chunk, max(len(x), 1))
        out = []
        for i in range(0, len(x), chunk):
            part = x[i:i + chunk]
            pad = np.zeros((chunk - len(part),) + part.shape[1:], part.dtype)
            out.append(np.asarray(fn(jnp.asarray(np.concatenate([part, pad]))))[:len(part)])
        return np.concatenate(out)

    def latents(self, x: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Dense (N, L) latent activations of raw inputs x (N, d)."""
        fn = _dense_latents_fn(self.d, self.n_latents, self.k)
        params = jax.tree.map(jnp.asarray, self.params)
        return self._chunks(lambda xb: fn(params, xb), self.prepare(x), chunk)

    def decode(self, z: np.ndarray, like: np.ndarray | None = None) -> np.ndarray:
        """Reconstruction from dense latents z (N, L), unstandardised.

        like: the raw rows (N, d) z was computed from; for an L2 SAE the reconstruction is
        scaled by their norms (raw space). Without it an L2 SAE returns the reconstruction
        of the unit-norm rows. No effect without L2 normalisation."""
        w, b = np.asarray(self.params["W_dec"]), np.asarray(self.params["b_pre"])
        out = self.unstandardize(np.asarray(z, np.float32) @ w + b)
        return out if like is None else out * self.row_scale(like)

    def reconstruct(self, x: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Raw-space x̂ of raw x (N, d) (for L2: at each row's own norm)."""
        return self.decode(self.latents(x, chunk), like=x)


@functools.lru_cache(maxsize=None)
def _dense_latents_fn(d: int, n_latents: int, k: int):
    """Jitted (params, x (B, d)) → dense latents (B, L), one per SAE shape."""
    model = TopKSAE(d, n_latents, k)

    @jax.jit
    def fn(params, x):
        vals, idx, _ = model.apply({"params": params}, x, k, method=TopKSAE.encode)
        rows = jnp.arange(x.shape[0])[:, None]
        return jnp.zeros((x.shape[0], n_latents), vals.dtype).at[rows, idx].set(vals)  # (B, L)

    return fn
