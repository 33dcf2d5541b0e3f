"""Config fields every method shares. Method configs (configs/<method>.py) start from
``base_config()`` and add ``model`` and method-specific fields.

Every value can be overridden on the command line: ``--config.train.steps=100``.
"""

from __future__ import annotations

from ml_collections import ConfigDict


def base_config() -> ConfigDict:
    c = ConfigDict()
    c.method = ""            # name in jaxdis.methods.REGISTRY
    c.seed = 0
    c.init_from = ""         # checkpoint dir/workdir to start from when the workdir has none
    c.cache_dir = ""         # features and the built-in corpus; default ~/.cache/jaxdis (JAXDIS_CACHE)

    c.data = ConfigDict()
    c.data.corpus = "builtin"        # "builtin", "builtin:tiny", a manifest .csv/.jsonl, or a LibriSpeech root
    c.data.sample_rate = 16000
    c.data.skip_bad_audio = False    # True: bad files become counted warnings instead of errors
    c.data.split = "speaker"         # "speaker" (unseen voices held out) or "utterance"
    c.data.heldout_frac = 0.25       # fraction of speakers (or utterances) held out from training
    c.data.split_seed = 0

    c.train = ConfigDict()
    c.train.steps = 1000
    c.train.batch_size = 32          # global batch, split over the mesh's data axis
    c.train.grad_accum = 1           # micro-batches per step (batch_size must divide by it)
    c.train.log_every = 50
    c.train.ckpt_every = 500
    c.train.keep_checkpoints = 3
    c.train.eval_every = 0           # 0: evaluate only at the end
    c.train.progress = True          # tqdm bar

    c.optim = ConfigDict()
    c.optim.name = "adam"            # adam | adamw | sgd
    c.optim.lr = 1e-3
    c.optim.schedule = "constant"    # constant | cosine | warmup_linear_decay
    c.optim.warmup_steps = 0
    c.optim.end_lr_frac = 0.0        # final lr as a fraction of lr (cosine / linear decay)
    c.optim.weight_decay = 0.0
    c.optim.clip_norm = 0.0          # 0: no clipping
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999

    c.mesh = ConfigDict()
    c.mesh.data = -1                 # devices on the data axis; -1: all
    return c
