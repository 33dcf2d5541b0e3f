"""ECAPA-TDNN utterance encoder on the built-in eSpeak NG corpus (jaxdis/methods/ecapa.py).

    python train.py --config configs/ecapa.py --workdir runs/ecapa                 # InfoNCE, no labels
    python train.py --config configs/ecapa.py:pseudo --workdir runs/ecapa_pseudo \\
        --config.objective.teacher=runs/ecapa                                      # + k-means pseudo-labels
    python train.py --config configs/ecapa.py:aam --workdir runs/ecapa_aam         # supervised AAM-softmax
    python eval.py verify --workdir runs/ecapa --out results/ecapa_verify

The argument is a comma-separated list: an objective (``infonce`` default, ``pseudo``,
``aam``) and a scale (default: CPU-sized, C = 128, ≤ 12 min a run on 2 shared CPU cores; ``tiny``
for tests; ``paper``: Learn2Diss's utterance encoder, d^l = 1024, 256-d, 1 s crops;
``vox``: the speechbrain VoxCeleb recipe, C = 1024, 192-d, 3 s crops, AAM 0.2 / 30).
Every model field (channels, kernel_sizes, dilations, embed_dim, …) is overridable:
``--config.model.embed_dim=256``.
"""

import dataclasses

from jaxdis.models.ecapa import EcapaConfig
from jaxdis.train.config import base_config


def _model(size: str, **extra) -> dict:
    fields = dataclasses.asdict(EcapaConfig.from_name(size))
    fields.update(extra)
    return fields


def get_config(arg: str | None = None):
    args = [a for a in (arg or "").split(",") if a]
    objective = next((a for a in args if a in ("infonce", "pseudo", "aam")), "infonce")
    scale = next((a for a in args if a in ("tiny", "paper", "vox")), "cpu")
    unknown = set(args) - {"infonce", "pseudo", "aam", "tiny", "paper", "vox"}
    if unknown:
        raise ValueError(f"unknown configs/ecapa.py variant(s) {sorted(unknown)}")

    c = base_config()
    c.method = "ecapa"
    c.data.corpus = "builtin"
    c.data.split = "speaker"          # EER on voices never seen in training
    c.data.heldout_frac = 0.25

    # EcapaConfig fields, plus the crop length in 10 ms frames.
    # CPU-sized: C = 128 (aggregation 384), 192-d; 1 s crops (Learn2Diss).
    c.model = _model("small", channels=(128, 128, 128, 128, 384), crop_frames=100)
    c.objective = dict(
        name=objective,
        temperature=0.1,              # InfoNCE τ (Learn2Diss eq. 5 has τ = 1; SimCLR uses 0.1–0.5)
        teacher="",                   # pseudo: workdir of the infonce run whose embeddings are clustered
        num_clusters=64,              # pseudo: Q
        kmeans_steps=300,
        ce_weight=1.0,                # pseudo: eq. 7 weighs InfoNCE and CE equally
        margin=0.2,                   # aam
        scale=30.0,
    )
    c.eval = dict(verify=True, max_trials=2_000_000, speaker_id=True)   # evaluate() on the held-out voices

    c.optim.name = "adam"
    c.optim.lr = 2e-3
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 50
    c.optim.end_lr_frac = 0.05
    c.train.batch_size = 64
    c.train.steps = 450              # ≈ 1 s a step on 2 shared CPU cores
    c.train.log_every = 25
    c.train.ckpt_every = 200
    if objective == "aam":
        c.model.crop_frames = 200     # 2 s crops, one per utterance
    elif objective == "pseudo":
        c.train.steps = 300           # continued training from the InfoNCE teacher
        c.optim.warmup_steps = 20

    if scale == "tiny":
        c.data.corpus = "builtin:tiny"
        c.data.heldout_frac = 0.5
        c.model = _model("tiny", crop_frames=40)
        c.objective.num_clusters = 4
        c.objective.kmeans_steps = 10
        c.eval.speaker_id = False
        c.optim.warmup_steps = 0
        c.train.batch_size = 4
        c.train.steps = 3
        c.train.log_every = 1
        c.train.ckpt_every = 3
        c.train.progress = False
    elif scale == "paper":
        c.model = _model("learn2diss", crop_frames=100)
        c.objective.num_clusters = 2000
        c.train.batch_size = 256
        c.train.steps = 100_000
        c.train.ckpt_every = 2000
        c.optim.warmup_steps = 2000
    elif scale == "vox":
        c.model = _model("c1024", crop_frames=300)
        c.train.batch_size = 128
        c.train.steps = 100_000
        c.train.ckpt_every = 2000
        c.optim.warmup_steps = 2000
    return c
