"""Subprocess entry point: one Learn2Diss joint step (tiny config) on 1 and on N forced
host devices, from the same state and batch. Prints one JSON line of results."""

import json
import os
import sys

import jax
import numpy as np


if os.environ.get("JAXDIS_COMPILATION_CACHE"):  # the tests' persistent cache, as conftest sets it in-process
    jax.config.update("jax_compilation_cache_dir", os.environ["JAXDIS_COMPILATION_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def one_step(num_devices: int) -> dict:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    from configs.learn2diss import get_config
    from jaxdis.methods import get_method
    from jaxdis.train.mesh import make_mesh, put_batch
    from jaxdis.train.step import init_state, jit_train_step

    config = get_config("tiny")
    method = get_method(config)
    mesh = make_mesh(num_devices)
    tx = method.optimizer(config.train.steps)
    batch = put_batch(method.data().batch(0), mesh)
    state = init_state(method, tx, mesh, config.seed, batch)
    state, metrics = jit_train_step(method, tx, mesh, state)(state, batch)
    keys = ("loss", "objective", "club", "q_loglik", "L_frame", "L_utt")
    q = np.concatenate([np.asarray(x).ravel() for x in jax.tree.leaves(state.params["q"])])
    return {**{k: float(metrics[k]) for k in keys}, "q_params": q[:64].tolist()}


if __name__ == "__main__":
    n = int(sys.argv[1])
    print("RESULT " + json.dumps({"1": one_step(1), str(n): one_step(n)}))
