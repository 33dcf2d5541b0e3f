"""Subprocess entry points for trainer tests that need their own JAX process
(forced host devices, jax.distributed). Prints one JSON line of results."""

import json
import os
import sys

import jax
import numpy as np


def example_config(**overrides):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    from configs.example import get_config

    c = get_config("tiny")
    for k, v in overrides.items():
        node = c
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    return c


def one_step(num_devices: int, grad_accum: int) -> dict:
    """One step of the example method on a mesh of `num_devices`."""
    from jaxdis.methods import get_method
    from jaxdis.train.mesh import make_mesh, put_batch
    from jaxdis.train.step import init_state, jit_train_step

    config = example_config(**{"train.grad_accum": grad_accum})
    method = get_method(config)
    mesh = make_mesh(num_devices)
    tx = method.optimizer(config.train.steps)
    batch = put_batch(method.data().batch(0), mesh)
    state = init_state(method, tx, mesh, config.seed, batch)
    step = jit_train_step(method, tx, mesh, state, grad_accum)
    state, metrics = step(state, batch)
    leaves = [np.asarray(x).ravel() for x in jax.tree.leaves((state.params, state.model_state))]
    return {"loss": float(metrics["loss"]), "params": np.concatenate(leaves).tolist()}


def distributed_train(workdir: str) -> dict:
    """A short training run; under jax.distributed when JAXDIS_COORDINATOR is set."""
    from jaxdis.train.mesh import initialize_distributed

    initialize_distributed()
    from jaxdis.train import train_and_evaluate
    from jaxdis.train.logging import read_jsonl

    config = example_config(**{"train.steps": 8, "train.log_every": 8, "train.ckpt_every": 8})
    train_and_evaluate(config, workdir)
    rows = [r for r in read_jsonl(workdir) if "train/loss" in r] if jax.process_index() == 0 else []
    return {"process": jax.process_index(), "devices": jax.device_count(),
            "loss": rows[-1]["train/loss"] if rows else None}


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "one_step":
        out = {f"{n}x{a}": one_step(n, a) for n in (1, int(args[0])) for a in (1, 2)}
    elif command == "distributed_train":
        out = distributed_train(args[0])
    print("RESULT " + json.dumps(out))
