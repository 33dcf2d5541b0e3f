"""TopK sparse autoencoders on an (N, d) embedding array (jaxdis/methods/sae.py).

    python train.py --config configs/sae.py --workdir runs/sae --config.data.embeddings=ge2e.npy
    # a grid: latent counts × k in one compiled step
    python train.py --config configs/sae.py:paper --workdir runs/sae_grid --config.data.embeddings=ge2e.npy
    python train.py --config configs/sae.py:tiny --workdir /tmp/sae    # synthetic data, seconds

Each entry of model.saes is (k, seed) at model.n_latents latents, or (n_latents, k, seed).
"""

from jaxdis.train.config import base_config


def get_config(arg: str | None = None):
    c = base_config()
    c.method = "sae"
    c.data.corpus = ""
    c.data.embeddings = ""           # (N, d) .npy or parquet
    c.data.normalize = "none"        # "l2": each row to unit norm first (saved with the run's config)
    c.data.standardize = False       # per-dimension standardisation (stats saved in model_state)
    c.data.synthetic_n = 0           # > 0 and no embeddings: a synthetic sparse array (tests)
    c.data.synthetic_dim = 16
    c.data.synthetic_features = 64
    c.data.synthetic_active = 3
    c.data.synthetic_seed = 0

    c.model = dict(
        n_latents=2048,
        saes=((32, 0),),             # (k, seed) or (n_latents, k, seed); a tuple so --config can override it
        k_aux=-1,                    # AuxK width; -1: d // 2
        aux_coef=1 / 32,             # AuxK weight (Gao et al.)
        dead_window=65536,           # samples without firing before a latent counts as dead
        median_iters=100,            # Weiszfeld iterations for b_pre
        matryoshka=(),               # nested prefixes as fractions of L, e.g. (1/64, 1/16, 1/4): the first
                                     # latents must reconstruct alone (Bussmann et al. 2025); () off
        sparse_impl="auto",          # row gathers/scatters: "scan" (CPU), "batched" (GPU/TPU), "auto" picks
    )
    c.optim.lr = 1e-3
    c.train.steps = 3000
    c.train.batch_size = 1024
    c.train.log_every = 100
    c.train.ckpt_every = 1000

    if arg == "paper":               # top-latent accuracy against latent count and k (paper Figs. 2-3)
        c.model.saes = tuple((n, k, 0) for n in (512, 1024, 2048, 4096, 8192) for k in (8, 16, 32, 64))
    elif arg == "tiny":
        c.data.synthetic_n = 512
        c.model.n_latents = 128
        c.model.saes = ((4, 0), (8, 0), (8, 1))
        c.model.dead_window = 256
        c.model.median_iters = 20
        c.optim.lr = 3e-3
        c.train.steps = 12
        c.train.batch_size = 64
        c.train.log_every = 4
        c.train.ckpt_every = 6
        c.train.progress = False
    return c
