"""The one trainer: mesh and sharding, train state, jitted step, loop, checkpoints, logging."""

from jaxdis.train.loop import NonFiniteError, restore, train_and_evaluate

__all__ = ["NonFiniteError", "restore", "train_and_evaluate"]
