"""Optimizers and schedules from a config block (see jaxdis.train.config)."""

from __future__ import annotations

import optax
from ml_collections import ConfigDict


def make_schedule(optim: ConfigDict, total_steps: int) -> optax.Schedule:
    lr, warmup = float(optim.lr), int(optim.get("warmup_steps", 0))
    end = lr * float(optim.get("end_lr_frac", 0.0))
    kind = optim.get("schedule", "constant")
    if kind == "constant":
        if warmup:
            return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup])
        return optax.constant_schedule(lr)
    if kind == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 0), max(total_steps, warmup + 1), end)
    if kind == "warmup_linear_decay":
        return optax.join_schedules(
            [optax.linear_schedule(0.0, lr, max(warmup, 1)), optax.linear_schedule(lr, end, max(total_steps - warmup, 1))],
            [max(warmup, 1)])
    raise ValueError(f"unknown schedule {kind!r}; use constant, cosine or warmup_linear_decay")


def make_optimizer(optim: ConfigDict, total_steps: int) -> optax.GradientTransformation:
    """Clipping (optional) then the named optimizer with its schedule."""
    schedule = make_schedule(optim, total_steps)
    name = optim.get("name", "adam")
    if name == "adam":
        opt = optax.adam(schedule, b1=optim.b1, b2=optim.b2)
    elif name == "adamw":
        opt = optax.adamw(schedule, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay)
    elif name == "sgd":
        opt = optax.sgd(schedule, momentum=optim.get("momentum", 0.9))
    else:
        raise ValueError(f"unknown optimizer {name!r}; use adam, adamw or sgd")
    clip = float(optim.get("clip_norm", 0.0))
    return optax.chain(optax.clip_by_global_norm(clip), opt) if clip > 0 else opt
