"""The smallest complete Method: an MLP with BatchNorm regressing a fixed random teacher.

It is the template for new methods and the trainer's own test subject: it has a
non-trained collection (BatchNorm statistics), randomness in the loss (dropout), and two
parameter groups with their own learning rates (``optax.multi_transform``), so it
exercises every path of the trainer in a second of compile time.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdis.data.batching import ArraySource
from jaxdis.methods.base import Method
from jaxdis.train.optim import make_schedule


class MLP(nn.Module):
    hidden: int = 32
    out: int = 4

    @nn.compact
    def __call__(self, x, train: bool):
        h = nn.Dense(self.hidden, use_bias=False, name="body")(x)  # BatchNorm follows: a bias would be dead
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="norm")(h)
        h = nn.Dropout(0.1, deterministic=not train)(nn.relu(h))
        return nn.Dense(self.out, name="head")(h)


def teacher_data(n: int, dim: int, out: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    w = rng.standard_normal((dim, out)).astype(np.float32) / np.sqrt(dim)
    return {"x": x, "y": np.tanh(x @ w).astype(np.float32)}


class ExampleMethod(Method):
    name = "example"

    def __init__(self, config):
        super().__init__(config)
        m = config.model
        self.model = MLP(hidden=m.hidden, out=m.out)

    def data(self) -> ArraySource:
        d = self.config.data
        return ArraySource(teacher_data(d.num_examples, d.dim, self.config.model.out, d.data_seed),
                           self.config.train.batch_size, self.config.seed)

    def init(self, rng, batch):
        variables = self.model.init({"params": rng}, batch["x"], train=False)
        return variables["params"], {"batch_stats": variables["batch_stats"]}

    def loss(self, params, model_state, batch, rng):
        pred, updates = self.model.apply({"params": params, **model_state}, batch["x"], train=True,
                                         rngs={"dropout": rng}, mutable=["batch_stats"])
        mse = jnp.mean((pred - batch["y"]) ** 2)
        return mse, ({"mse": mse}, {"batch_stats": updates["batch_stats"]})

    def optimizer(self, total_steps):
        # Two groups, two learning rates: the head learns faster than the body.
        o = self.config.optim
        body = optax.adam(make_schedule(o, total_steps))
        head = optax.adam(make_schedule(o, total_steps) if o.head_lr_mult == 1 else
                          lambda s: make_schedule(o, total_steps)(s) * o.head_lr_mult)
        labels = lambda params: jax.tree_util.tree_map_with_path(
            lambda path, _: "head" if path[0].key == "head" else "body", params)
        return optax.multi_transform({"body": body, "head": head}, labels)

    def learning_rates(self, step):
        lr = float(make_schedule(self.config.optim, self.config.train.steps)(step))
        return {"lr/body": lr, "lr/head": lr * self.config.optim.head_lr_mult}

    def evaluate(self, params, model_state, step, workdir):
        d = self.config.data
        test = teacher_data(512, d.dim, self.config.model.out, d.data_seed + 1)
        pred = self.model.apply({"params": params, **model_state}, test["x"], train=False)
        return {"test_mse": float(jnp.mean((pred - test["y"]) ** 2))}
