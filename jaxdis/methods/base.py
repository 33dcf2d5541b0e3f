"""The contract between a training method and the one shared trainer.

A method gives the trainer four things: a source of fixed-shape batches indexed by step,
an ``init`` that builds parameters (and non-trained model state such as BatchNorm
statistics), a pure ``loss``, and an optimizer. The trainer owns everything else: the
mesh, the jitted step, gradient accumulation, checkpoints, logging and the NaN guard.
"""

from __future__ import annotations

import abc
from typing import Any, Protocol

import jax
import numpy as np
import optax
from ml_collections import ConfigDict

PyTree = Any
Batch = dict[str, np.ndarray]


class BatchSource(Protocol):
    """Deterministic batches: the batch for a step depends only on (seed, step).

    That is what makes a killed-and-resumed run bit-identical to an uninterrupted one,
    and what lets each host read only its own slice of the global batch.
    """

    global_batch_size: int

    def batch(self, step: int, shard: int = 0, num_shards: int = 1) -> Batch:
        """Rows [shard * B/num_shards, (shard+1) * B/num_shards) of the global batch at `step`."""
        ...


class Method(abc.ABC):
    """One training method (Autodecompose, ECAPA, transformer, SAE, Learn2Diss)."""

    name: str = "method"

    def __init__(self, config: ConfigDict):
        self.config = config

    @abc.abstractmethod
    def data(self) -> BatchSource:
        """The training batches."""

    @abc.abstractmethod
    def init(self, rng: jax.Array, batch: Batch) -> tuple[PyTree, PyTree]:
        """Returns (params, model_state). model_state holds non-trained collections
        (e.g. {"batch_stats": ...}); use {} when there are none."""

    @abc.abstractmethod
    def loss(self, params: PyTree, model_state: PyTree, batch: Batch,
             rng: jax.Array) -> tuple[jax.Array, tuple[dict[str, jax.Array], PyTree]]:
        """Pure loss: returns (scalar loss, (metrics, new model_state)).

        Metrics are scalars averaged over the batch; they are logged as ``train/<name>``.
        Parts of the loss that must not reach some parameters use ``jax.lax.stop_gradient``
        (CLUB's variational net, for instance): one gradient of the sum is then correct for
        every parameter group, and ``optimizer`` gives each group its own learning rate.
        """

    def optimizer(self, total_steps: int) -> optax.GradientTransformation:
        """Default: the config's ``optim`` block (see jaxdis.train.optim.make_optimizer)."""
        from jaxdis.train.optim import make_optimizer

        return make_optimizer(self.config.optim, total_steps)

    def learning_rates(self, step: int) -> dict[str, float]:
        """Learning rates to log at `step`, by name."""
        from jaxdis.train.optim import make_schedule

        return {"lr": float(make_schedule(self.config.optim, self.config.train.steps)(step))}

    def embed(self, params: PyTree, model_state: PyTree, corpus) -> tuple[Any, dict[str, np.ndarray]]:
        """Utterance embeddings of a corpus by each of the method's encoders.

        Returns (kept_corpus, {encoder name: (N, d) array}) with rows aligned to
        kept_corpus.table; the shared evaluations (speaker ID, verification, probes)
        run on these. Methods without utterance encoders need not implement it.
        """
        raise NotImplementedError(f"method {self.name!r} has no utterance encoders")

    def embed_waves(self, params: PyTree, model_state: PyTree, waves: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Utterance embeddings of 16 kHz mono waveforms: {encoder name: (N, d)}."""
        raise NotImplementedError(f"method {self.name!r} has no utterance encoders")

    def evaluate(self, params: PyTree, model_state: PyTree, step: int, workdir: str) -> dict[str, float]:
        """Eval hook called every ``train.eval_every`` steps and at the end; returns scalars."""
        return {}
