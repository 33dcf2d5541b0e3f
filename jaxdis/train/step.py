"""The one jitted train step, for every method.

``step(state, batch) -> (state, metrics)`` is pure: the per-step key is
``fold_in(state.rng, state.step)``, so a resumed run draws the same randomness as an
uninterrupted one. Gradient accumulation scans over micro-batches inside the step;
the state buffers are donated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxdis.methods.base import Method
from jaxdis.train.mesh import DATA_AXIS, batch_sharding, replicated
from jaxdis.train.state import TrainState

PyTree = Any


def _split_micro(batch: dict[str, jax.Array], accum: int, mesh: Mesh | None) -> dict[str, jax.Array]:
    """(B, ...) → (accum, B/accum, ...), micro-batch j taking rows j, j+accum, … so each
    micro-batch stays spread over every device of the data axis."""

    def split(x):
        micro = x.shape[0] // accum
        y = x.reshape((micro, accum) + x.shape[1:]).swapaxes(0, 1)
        if mesh is None:
            return y
        return jax.lax.with_sharding_constraint(y, NamedSharding(mesh, P(None, DATA_AXIS)))

    return jax.tree.map(split, batch)


def _global_norm(tree: PyTree) -> jax.Array:
    return optax.tree.norm(tree) if jax.tree.leaves(tree) else jnp.zeros(())


def make_update_fn(method: Method, tx: optax.GradientTransformation, grad_accum: int = 1,
                   mesh: Mesh | None = None) -> Callable:
    """The pure update: loss → grads (accumulated) → optax update. Not yet jitted."""
    grad_fn = jax.value_and_grad(method.loss, has_aux=True)

    def update(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
        rng = jax.random.fold_in(state.rng, state.step)
        if grad_accum == 1:
            (loss, (metrics, model_state)), grads = grad_fn(state.params, state.model_state, batch, rng)
        else:
            micro = _split_micro(batch, grad_accum, mesh)

            def body(carry, xs):
                grads_sum, model_state = carry
                mb, i = xs
                (loss, (metrics, model_state)), grads = grad_fn(
                    state.params, model_state, mb, jax.random.fold_in(rng, i))
                return (jax.tree.map(jnp.add, grads_sum, grads), model_state), (loss, metrics)

            zeros = jax.tree.map(jnp.zeros_like, state.params)
            (grads, model_state), (losses, metrics) = jax.lax.scan(
                body, (zeros, state.model_state), (micro, jnp.arange(grad_accum)))
            grads = jax.tree.map(lambda g: g / grad_accum, grads)
            loss = losses.mean()
            metrics = jax.tree.map(jnp.mean, metrics)

        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(metrics)
        metrics.update(loss=loss, grad_norm=_global_norm(grads), param_norm=_global_norm(params),
                       update_norm=_global_norm(updates))
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state)
        return new_state, metrics

    return update


def state_shardings(state: TrainState, mesh: Mesh) -> TrainState:
    """Data parallel: every leaf of the state is replicated over the mesh."""
    rep = replicated(mesh)
    return jax.tree.map(lambda _: rep, state)


def jit_train_step(method: Method, tx: optax.GradientTransformation, mesh: Mesh, abstract_state: TrainState,
                   grad_accum: int = 1) -> Callable:
    """The jitted, sharded, donating train step."""
    update = make_update_fn(method, tx, grad_accum, mesh)
    s_shard = state_shardings(abstract_state, mesh)
    return jax.jit(update, in_shardings=(s_shard, batch_sharding(mesh)), out_shardings=(s_shard, replicated(mesh)),
                   donate_argnums=0)


def init_state(method: Method, tx: optax.GradientTransformation, mesh: Mesh, seed: int,
               example_batch: dict[str, Any]) -> TrainState:
    """Creates the state already placed on the mesh (eval_shape → shardings → jit(init))."""
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(seed))

    def build(batch):
        params, model_state = method.init(init_rng, batch)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                          model_state=model_state, rng=train_rng)

    abstract = jax.eval_shape(build, example_batch)
    return jax.jit(build, out_shardings=state_shardings(abstract, mesh))(example_batch)


def with_params(state: TrainState, params: PyTree, model_state: PyTree, tx: optax.GradientTransformation,
                mesh: Mesh) -> TrainState:
    """A fresh state (step 0, new optimizer) around given parameters: ``init_from``."""
    rep = replicated(mesh)
    params = jax.device_put(params, rep)
    model_state = jax.device_put(model_state, rep)
    opt_state = jax.jit(tx.init, out_shardings=rep)(params)
    return state.replace(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state, opt_state=opt_state)


