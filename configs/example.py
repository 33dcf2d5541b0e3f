"""The template method (jaxdis/methods/example.py): an MLP regressing a random teacher.

    python train.py --config configs/example.py --workdir runs/example
    python train.py --config configs/example.py:tiny --workdir /tmp/ex --config.train.steps=20
"""

from jaxdis.train.config import base_config


def get_config(arg: str | None = None):
    c = base_config()
    c.method = "example"
    c.data.corpus = ""
    c.data.num_examples = 4096
    c.data.dim = 16
    c.data.data_seed = 1
    c.model = dict(hidden=64, out=4)
    c.optim.lr = 3e-3
    c.optim.head_lr_mult = 3.0
    c.train.steps = 500
    c.train.batch_size = 64
    if arg == "tiny":
        c.data.num_examples = 256
        c.model.hidden = 16
        c.train.steps = 12
        c.train.batch_size = 16
        c.train.log_every = 4
        c.train.ckpt_every = 4
        c.train.progress = False
    return c
