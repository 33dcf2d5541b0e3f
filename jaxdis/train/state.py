"""The train state: everything a step reads and writes, and everything a checkpoint holds."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax

PyTree = Any


@flax.struct.dataclass
class TrainState:
    step: jax.Array          # () int32: number of updates applied
    params: PyTree           # trained parameters
    opt_state: PyTree        # optax state
    model_state: PyTree      # non-trained collections (BatchNorm statistics, dead-latent counters…)
    rng: jax.Array           # (2,) uint32 base key; each step uses fold_in(rng, step)
