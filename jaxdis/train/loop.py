"""The one training loop: any Method, one device or many, fresh or resumed.

Resume priority: the workdir's own latest checkpoint → ``config.init_from`` (parameters
only, fresh optimizer) → scratch. Batches are a pure function of (seed, step) and the
step key is fold_in(rng, step), so a killed and resumed run ends bit-identical to an
uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import numpy as np
from ml_collections import ConfigDict
from tqdm.auto import tqdm

from jaxdis.methods import Method, get_method
from jaxdis.train import checkpoint as ckpt
from jaxdis.train.logging import MetricWriter
from jaxdis.train.mesh import local_shard_info, make_mesh, put_batch
from jaxdis.train.state import TrainState
from jaxdis.train.step import init_state, jit_train_step, with_params

log = logging.getLogger("jaxdis.train")

# Metrics that must stay finite; a non-finite one stops the run before anything is saved.
GUARDED = ("loss", "grad_norm", "param_norm")


class NonFiniteError(FloatingPointError):
    """Training produced NaN/inf; the last good checkpoint is kept."""


def _check_finite(step: int, metrics: dict[str, float], workdir: str, last_saved: int | None) -> None:
    bad = {k: metrics[k] for k in GUARDED if k in metrics and not math.isfinite(metrics[k])}
    if bad:
        kept = f"the last good checkpoint (step {last_saved}) is kept" if last_saved is not None else "no checkpoint was saved yet"
        raise NonFiniteError(
            f"non-finite {', '.join(f'{k}={v}' for k, v in bad.items())} at step {step}; stopped, {kept} in "
            f"{os.path.join(workdir, ckpt.CKPT_DIR)}. Lower --config.optim.lr or set --config.optim.clip_norm=1.0, "
            "then rerun the same command to resume from it.")


def _host_scalars(metrics: dict[str, jax.Array]) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


def _evaluate(method: Method, state: TrainState, step: int, workdir: str, writer: MetricWriter) -> dict[str, float]:
    results = method.evaluate(state.params, state.model_state, step, workdir)
    if results:
        writer.write(step, {f"eval/{k}": v for k, v in results.items()})
        writer.flush()
        if jax.process_index() == 0:
            with open(os.path.join(workdir, "eval.json"), "w") as f:
                json.dump({"step": step, **{k: float(v) for k, v in results.items()}}, f, indent=2)
        log.info("eval at step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in results.items()))
    return results


def train_and_evaluate(config: ConfigDict, workdir: str) -> TrainState:
    """Trains `config.method` in `workdir` (created or resumed) and returns the final state."""
    method = get_method(config)
    mesh = make_mesh(config.mesh.get("data", -1))
    shard, num_shards = local_shard_info(mesh)
    tcfg = config.train
    if tcfg.batch_size % (mesh.size * tcfg.grad_accum):
        raise ValueError(f"train.batch_size={tcfg.batch_size} must divide by devices ({mesh.size}) × "
                         f"grad_accum ({tcfg.grad_accum})")
    source = method.data()
    tx = method.optimizer(tcfg.steps)
    state = init_state(method, tx, mesh, config.seed, put_batch(source.batch(0, shard, num_shards), mesh))

    is_main = jax.process_index() == 0
    previous = ckpt.saved_config(workdir)
    if is_main:
        ckpt.save_config(workdir, config)
    mngr = ckpt.manager(workdir, tcfg.keep_checkpoints)
    start = mngr.latest_step()
    if start is not None:
        state = ckpt.restore_into(mngr, start, state)
        log.info("resumed from %s at step %d", workdir, start)
        changes = ckpt.config_changes(previous, config) if previous else []
        if changes:
            log.warning("resuming at step %d with a changed config (%s); the learning-rate schedule is a "
                        "function of train.steps and optim.*, so a change there changes it from this step on",
                        start, "; ".join(changes))
    elif config.get("init_from"):
        raw = ckpt.restore_raw(config.init_from)
        state = with_params(state, raw["params"], raw["model_state"], tx, mesh)
        log.info("initialised parameters from %s", config.init_from)
    start = int(start or 0)

    step_fn = jit_train_step(method, tx, mesh, state, tcfg.grad_accum)
    writer = MetricWriter(workdir)
    last_saved = start if start else None
    bar = tqdm(total=tcfg.steps, initial=start, desc=config.method, disable=not (is_main and tcfg.progress),
               dynamic_ncols=True)
    prefetch = ThreadPoolExecutor(1)
    next_batch = prefetch.submit(source.batch, start, shard, num_shards)
    t_last, n_last = time.perf_counter(), start
    pending: tuple[int, dict] | None = None  # metrics of the previous step, checked one step late
    try:
        for step in range(start, tcfg.steps):
            batch = put_batch(next_batch.result(), mesh)
            if step + 1 < tcfg.steps:
                next_batch = prefetch.submit(source.batch, step + 1, shard, num_shards)
            state, metrics = step_fn(state, batch)
            if pending is not None:  # the previous step's metrics are ready by now
                _check_finite(pending[0], _host_scalars({k: pending[1][k] for k in GUARDED if k in pending[1]}),
                              workdir, last_saved)
            pending = (step, metrics)
            done = step + 1
            bar.update(1)

            if done % tcfg.log_every == 0 or done == tcfg.steps:
                scalars = _host_scalars(metrics)
                _check_finite(step, scalars, workdir, last_saved)
                now = time.perf_counter()
                scalars["examples_per_sec"] = (done - n_last) * tcfg.batch_size / max(now - t_last, 1e-9)
                t_last, n_last = now, done
                logged = {f"train/{k}": v for k, v in scalars.items()}
                logged.update({f"train/{k}": v for k, v in method.learning_rates(step).items()})
                writer.write(done, logged)
                bar.set_postfix(loss=f"{scalars['loss']:.4g}")

            if done % tcfg.ckpt_every == 0 or done == tcfg.steps:
                _check_finite(step, _host_scalars({k: metrics[k] for k in GUARDED if k in metrics}), workdir, last_saved)
                ckpt.save(mngr, done, state)
                last_saved = done
            if tcfg.eval_every and done % tcfg.eval_every == 0 and done != tcfg.steps:
                _evaluate(method, state, done, workdir, writer)
        mngr.wait_until_finished()
        _evaluate(method, state, int(state.step), workdir, writer)
    finally:
        bar.close()
        prefetch.shutdown(wait=False, cancel_futures=True)
        mngr.wait_until_finished()
        mngr.close()
        writer.close()
    return state


def restore(workdir: str) -> tuple[ConfigDict, Method, Any, Any]:
    """(config, method, params, model_state) of a trained workdir, as host arrays."""
    config = ckpt.load_config(workdir)
    raw = ckpt.restore_raw(workdir)
    return config, get_method(config), raw["params"], raw["model_state"]


def params_equal(a: Any, b: Any) -> bool:
    """Bitwise equality of two pytrees of arrays (for resume checks)."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))
