"""CLUB: the contrastive log-ratio upper bound on mutual information (Cheng et al. 2020).

A variational network q(y | x) = N(μ(x), diag σ²(x)) is fitted to the conditional
p(y | x) by maximum likelihood on stopped-gradient samples (Learn2Diss eq. 2), and

    I_CLUB = mean_i [ log q(y_i | x_i) − mean_j log q(y_j | x_i) ]          (eq. 1)

upper-bounds I(X; Y) when q is close to p(y | x). An encoder that minimises I_CLUB (with
q's parameters held fixed) removes what x says about y.

Estimators (``estimator=``): ``"all"`` (every pair of the batch, eq. 1), ``"sample"``
(CLUBSample: one random negative per anchor). CLUBMean is q with unit variance
(``ClubNet(variance="unit")``). The group form (Learn2Diss eq. 8, VQMIVC's
``CLUBSample_group``) takes frame sequences: at every frame index t, x_{i,t} is paired
with y_{i,t} and the negatives are y_{j,t} of the other utterances of the batch; padded
frames are masked out. An utterance-level x (B, d_x) is broadcast to every frame.

Conditioning on the same x_i in the positive and the negatives makes log σ²(x_i) and
the Gaussian constant cancel, so the estimate uses only (y − μ)² / σ²; averaged over all
pairs it equals eq. 8's form, which varies the conditioning instead.

``split_losses`` gives the two halves of the adversarial game as one differentiable sum:
the CLUB estimate with q frozen (its gradient reaches the encoders only) and q's negative
log-likelihood on frozen samples (its gradient reaches q only). One ``jax.grad`` of
``task + λ·mi + nll`` thus trains both inside one jitted step.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
PyTree = Any

LOG_2PI = math.log(2 * math.pi)
VARIANCES = ("softplus", "tanh", "linear", "unit")
ESTIMATORS = ("all", "sample")


class ClubNet(nn.Module):
    """q(y | x): separate mean and log-variance MLPs, each ``layers`` Dense layers (ReLU
    between) ``d_x → hidden → … → d_y``. Returns (μ, log σ²), both (..., d_y).

    variance: ``"softplus"`` (default) σ² = softplus(h) + min_var: unbounded above, never
    below min_var, gradients never saturate; ``"tanh"``: log σ² = tanh(h) as in the original
    code (σ² ∈ (0.37, 2.7): saturates when the data need more); ``"linear"``: log σ² = h;
    ``"unit"``: σ² = 1 (CLUBMean; no log-variance network).
    """

    y_dim: int
    hidden: int = 64
    layers: int = 2
    variance: str = "softplus"
    min_var: float = 1e-4

    def _mlp(self, x: Array, name: str) -> Array:
        for i in range(self.layers - 1):
            x = nn.relu(nn.Dense(self.hidden, name=f"{name}_{i}")(x))
        return nn.Dense(self.y_dim, name=f"{name}_{self.layers - 1}")(x)

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, Array]:
        if self.variance not in VARIANCES:
            raise ValueError(f"unknown variance {self.variance!r}; use one of {VARIANCES}")
        x = x.astype(jnp.float32)
        mu = self._mlp(x, "mu")
        if self.variance == "unit":
            return mu, jnp.zeros_like(mu)
        h = self._mlp(x, "logvar")
        if self.variance == "softplus":
            logvar = jnp.log(jax.nn.softplus(h) + self.min_var)
        elif self.variance == "tanh":
            logvar = jnp.tanh(h)
        else:
            logvar = h
        return mu, logvar


# --------------------------------------------------------------------------- densities

def log_likelihood(mu: Array, logvar: Array, y: Array) -> Array:
    """log N(y | μ, diag exp(logvar)) summed over the last axis: (...,)."""
    return -0.5 * jnp.sum((y - mu) ** 2 * jnp.exp(-logvar) + logvar + LOG_2PI, axis=-1)


def _pairwise_sq(mu: Array, logvar: Array, y: Array) -> Array:
    """(B, B, T): Σ_d (y_{j,t} − μ_{i,t})² / σ²_{i,t} for every anchor i and candidate j,
    by expanding the square into two contractions (no (B, B, T, D) tensor)."""
    w = jnp.exp(-logvar)                                                      # (B, T, D)
    a = jnp.einsum("itd,jtd->ijt", w, y * y)
    b = jnp.einsum("itd,jtd->ijt", w * mu, y)
    c = jnp.sum(w * mu * mu, -1)                                              # (B, T)
    return a - 2 * b + c[:, None, :]


def _as_frames(x: Array, y: Array, mask: Array | None) -> tuple[Array, Array, Array]:
    """x (B, d_x) or (B, T, d_x), y (B, d_y) or (B, T, d_y) → (B, T, ·) both, mask (B, T)."""
    if y.ndim == 2:
        y = y[:, None]
    if x.ndim == 2:
        x = jnp.broadcast_to(x[:, None], (x.shape[0], y.shape[1], x.shape[-1]))
    if mask is None:
        mask = jnp.ones(y.shape[:2], bool)
    return x, y, mask.astype(bool)


def _masked_mean(v: Array, m: Array) -> Array:
    m = m.astype(jnp.float32)
    return jnp.sum(v * m) / jnp.maximum(jnp.sum(m), 1.0)


# --------------------------------------------------------------------------- estimators

def club(mu: Array, logvar: Array, y: Array, mask: Array | None = None, estimator: str = "all",
         key: Array | None = None) -> Array:
    """The CLUB estimate (nats) from q's outputs at x: μ, log σ² (B, [T,] d_y) and y.

    Group form with frames: anchor (i, t) against y_{j,t} of every utterance j real at t
    ("all") or of one random utterance ("sample", a permutation of the batch: the
    negative may be i itself, as in the reference code). Padded anchors and negatives
    are excluded. Without a T axis it is eq. 1 over the batch.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; use one of {ESTIMATORS}")
    mu, y, mask = _as_frames(mu, y, mask)
    logvar = jnp.broadcast_to(logvar if logvar.ndim == 3 else logvar[:, None], mu.shape)
    w = jnp.exp(-logvar)
    pos = -0.5 * jnp.sum((y - mu) ** 2 * w, -1)                               # (B, T)
    if estimator == "all":
        neg_all = -0.5 * _pairwise_sq(mu, logvar, y)                          # (B, B, T)
        valid_j = mask[None, :, :].astype(jnp.float32)                        # negatives real at t
        neg = jnp.sum(neg_all * valid_j, 1) / jnp.maximum(valid_j.sum(1), 1.0)  # (B, T)
        return _masked_mean(pos - neg, mask)
    if key is None:
        raise ValueError("estimator='sample' needs a PRNG key")
    perm = jax.random.permutation(key, y.shape[0])
    neg = -0.5 * jnp.sum((y[perm] - mu) ** 2 * w, -1)                         # (B, T)
    return _masked_mean(pos - neg, mask & mask[perm])


def nll(mu: Array, logvar: Array, y: Array, mask: Array | None = None) -> Array:
    """Mean negative log-likelihood −log q(y | x) over real (frames of) samples (eq. 2)."""
    mu, y, mask = _as_frames(mu, y, mask)
    logvar = jnp.broadcast_to(logvar if logvar.ndim == 3 else logvar[:, None], mu.shape)
    return -_masked_mean(log_likelihood(mu, logvar, y), mask)


def split_losses(net: ClubNet, q_params: PyTree, x: Array, y: Array, mask: Array | None = None,
                 estimator: str = "all", key: Array | None = None) -> tuple[Array, Array, dict[str, Array]]:
    """(mi, q_nll, metrics) for one joint step.

    mi: the CLUB estimate with q's parameters stopped: its gradient reaches x and y only.
    q_nll: q's negative log-likelihood on stopped x and y: its gradient reaches q only.
    Minimising ``task + λ·mi + q_nll`` makes the encoders minimise the bound while q keeps
    maximising its likelihood, from one gradient. Metrics: ``club`` (the estimate) and
    ``q_loglik`` (mean log q(y | x), nats per sample or frame).
    """
    mu, logvar = net.apply({"params": jax.lax.stop_gradient(q_params)}, x)
    mi = club(mu, logvar, y, mask, estimator, key)
    sx, sy = jax.lax.stop_gradient(x), jax.lax.stop_gradient(y)
    q_mu, q_logvar = net.apply({"params": q_params}, sx)
    q_nll = nll(q_mu, q_logvar, sy, mask)
    return mi, q_nll, {"club": mi, "q_loglik": -q_nll}


def gaussian_mi(rho: float | Array, dim: int = 1) -> Array:
    """True I(X; Y) of standard Gaussians with per-dimension correlation ρ: −d/2 log(1 − ρ²)."""
    return -0.5 * dim * jnp.log1p(-jnp.square(rho))


def gaussian_club(rho: float | Array, dim: int = 1) -> Array:
    """The CLUB value with the exact conditional q = p(y | x) for those Gaussians:
    d ρ² / (1 − ρ²) ≥ −d/2 log(1 − ρ²)."""
    r2 = jnp.square(rho)
    return dim * r2 / (1 - r2)
