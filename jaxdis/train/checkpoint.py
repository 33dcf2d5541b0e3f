"""Orbax checkpoints of the whole train state.

Orbax writes each step into a temporary directory and renames it when complete, so a
run killed mid-save never leaves a checkpoint that looks whole. The config travels with
the checkpoints (``workdir/config.json``) so a workdir alone rebuilds the model.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from ml_collections import ConfigDict

PyTree = Any
CKPT_DIR = "checkpoints"
CONFIG_FILE = "config.json"


def manager(workdir: str, keep: int = 3) -> ocp.CheckpointManager:
    path = os.path.abspath(os.path.join(workdir, CKPT_DIR))
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True)
    return ocp.CheckpointManager(path, options=options)


def save(mngr: ocp.CheckpointManager, step: int, state: PyTree) -> None:
    mngr.save(step, args=ocp.args.StandardSave(state), force=True)


def restore_into(mngr: ocp.CheckpointManager, step: int, target: PyTree) -> PyTree:
    """Restores `step` with the shapes, dtypes and shardings of `target`."""
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), target)
    return mngr.restore(step, args=ocp.args.StandardRestore(abstract))


def checkpoint_dir(path: str) -> str:
    """Accepts a workdir or its checkpoints/ folder."""
    sub = os.path.join(path, CKPT_DIR)
    return sub if os.path.isdir(sub) else path


def latest_step(path: str) -> int | None:
    path = checkpoint_dir(path)
    if not os.path.isdir(path):
        return None
    with ocp.CheckpointManager(os.path.abspath(path)) as mngr:
        return mngr.latest_step()


def restore_raw(path: str, step: int | None = None) -> dict:
    """Restores a checkpoint as plain host arrays, without knowing its structure."""
    path = os.path.abspath(checkpoint_dir(path))
    with ocp.CheckpointManager(path) as mngr:
        step = mngr.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint under {path}")
        restored = mngr.restore(step, args=ocp.args.StandardRestore())
    return jax.tree.map(lambda x: jax.device_get(x), restored)


def save_config(workdir: str, config: ConfigDict) -> None:
    os.makedirs(workdir, exist_ok=True)
    tmp = os.path.join(workdir, CONFIG_FILE + ".tmp")
    with open(tmp, "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    os.replace(tmp, os.path.join(workdir, CONFIG_FILE))


def config_changes(old: dict, new: ConfigDict) -> list[str]:
    """"key: old → new" for every dotted key whose value differs between a workdir's saved
    config (as read from config.json) and `new` (compared as JSON, as saved)."""
    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    a, b = flat(old), flat(json.loads(new.to_json_best_effort()))
    return [f"{k}: {a.get(k, '(unset)')} → {b.get(k, '(unset)')}" for k in sorted(a.keys() | b.keys())
            if a.get(k) != b.get(k)]


def saved_config(workdir: str) -> dict | None:
    """The config.json a previous run left in `workdir`, as a dict; None if there is none."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def load_config(workdir: str) -> ConfigDict:
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: is {workdir!r} a jaxdis workdir (made by train.py)?")
    with open(path) as f:
        return ConfigDict(json.load(f))
