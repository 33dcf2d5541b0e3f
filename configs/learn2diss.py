"""Learn2Diss: frame encoder g + utterance encoder h trained jointly with a CLUB penalty
on their mutual information (jaxdis/methods/learn2diss.py; paper eq. 10).

    # default: CPU-sized (g: 4 × 192-d on log-mel, h: ECAPA C = 128), built-in corpus
    python train.py --config configs/learn2diss.py --workdir runs/l2d_mi_on
    python train.py --config configs/learn2diss.py --workdir runs/l2d_mi_off --config.mi_weight=0
    python eval.py learn2diss-table --workdirs runs/l2d_mi_off runs/l2d_mi_on --out results/l2d
    # smoke test
    python train.py --config configs/learn2diss.py:tiny --workdir /tmp/l2d
    # paper scale (L2D-H12: N = 0, M = 12), from HuBERT Base and a SimCLR ECAPA run
    python train.py --config configs/learn2diss.py:paper --workdir runs/l2d_h12 \\
        --config.frame_objective.teacher=hf:/path/to/hubert-base-ls960 \\
        --config.model.frame.init_from_hf=/path/to/hubert-base-ls960 --config.data.corpus=/path/to/LibriSpeech

Table 1's knobs: ``model.frozen_layers`` (N), ``model.trainable_layers`` (M), and the
ECAPA layers L = len(model.utt.channels) + 1 (frame layers z¹ … z^{L−1}, pooled z^L).
"""

import dataclasses

from ml_collections import ConfigDict

from jaxdis.models.ecapa import EcapaConfig
from jaxdis.train.config import base_config


def _optim(lr, schedule="constant", warmup_steps=0, end_lr_frac=0.0, clip_norm=1.0, name="adam"):
    return ConfigDict(dict(name=name, lr=lr, schedule=schedule, warmup_steps=warmup_steps, end_lr_frac=end_lr_frac,
                           weight_decay=0.0, clip_norm=clip_norm, b1=0.9, b2=0.999))


def _ecapa(size, **extra):
    fields = dataclasses.asdict(EcapaConfig.from_name(size))
    fields.update(extra)
    return fields


def get_config(arg: str | None = None):
    c = base_config()
    c.method = "learn2diss"
    c.data.corpus = "builtin"
    c.data.split = "speaker"           # probes run on voices never seen in training
    c.data.heldout_frac = 0.25
    c.data.crop_seconds = 2.0          # g sees the crop, h its two 1 s halves (the non-overlapping views)

    c.mi_weight = 1e-3                 # λ of eq. 10 (0: the MI-off ablation)
    c.mi_warmup_steps = 0              # > 0: λ ramps linearly from 0 over these steps (q fits first)
    c.mi = ConfigDict(dict(
        estimator="all",               # "all" pairs of the batch (eq. 8) | "sample" (one random negative)
        reduce="sum",                  # "sum" over frames as eq. 8 | "mean" per frame
    ))

    c.model = ConfigDict(dict(
        frozen_layers=0,               # N: frozen transformer layers of the feature extractor f
        trainable_layers=4,            # M: layers of the frame encoder g
        utt_input="fbank",             # h reads the 80-d log-mel (100 Hz) | "features": X' as in the paper
        # FrameEncoderConfig fields for f + g (configs/transformer.py's CPU model)
        frame=ConfigDict(dict(size="small", hidden=192, heads=4, mlp=768, frontend="fbank", fbank_norm="utterance",
                              feat_proj_norm=False, dropout=0.1, activation_dropout=0.0, feat_dropout=0.1,
                              dtype="float32", init_from_hf="")),
        # EcapaConfig fields for h (configs/ecapa.py's CPU model: C = 128, 192-d)
        utt=ConfigDict(_ecapa("small", channels=(128, 128, 128, 128, 384))),
        # q_φ: P = 2 Dense layers each for mean and log-variance, d^L → hidden → D
        q=ConfigDict(dict(hidden=512, layers=2, variance="softplus")),
    ))
    c.init = ConfigDict(dict(frame="", utt=""))  # workdirs of a transformer / ECAPA run to start g / h from

    # g's objective: jaxdis.methods.transformer's fields (k-means targets, span masks, pseudo-con)
    c.frame_objective = ConfigDict(dict(
        targets="mfcc", teacher="", target_layer=9, num_clusters=100, kmeans_frames=50_000, kmeans_steps=200,
        mask_prob=0.08, mask_span=10, min_spans=2, unmasked_weight=0.0, pc_weight=1.0, tau=0.1, pc_frames=512,
        pc_denominator="negatives", pc_normalize=True))
    # h's objective: InfoNCE (eq. 5), + CE on k-means pseudo-labels of an ECAPA teacher run ("pseudo", eq. 6–7)
    c.utt_objective = ConfigDict(dict(name="infonce", temperature=0.1, teacher="", num_clusters=64,
                                      kmeans_steps=300, ce_weight=1.0))

    steps = 300                        # about 10 min on 2 busy CPU cores
    c.optim = ConfigDict(dict(
        frame=_optim(1e-3, "warmup_linear_decay", warmup_steps=steps // 10, end_lr_frac=0.05),
        utt=_optim(1e-3),
        q=_optim(1e-3),
    ))
    c.eval = ConfigDict(dict(layers=[-1]))  # unused by the trainer; eval.py learn2diss-table does the probes
    c.train.steps = steps
    c.train.batch_size = 16
    c.train.log_every = 25
    c.train.ckpt_every = 250

    if arg == "tiny":
        c.data.corpus = "builtin:tiny"
        c.data.heldout_frac = 0.5
        c.data.crop_seconds = 0.8
        c.model.trainable_layers = 2
        c.model.frame.update(size="tiny", hidden=32, heads=4, mlp=64)
        c.model.utt = ConfigDict(_ecapa("tiny", channels=(32, 32, 96), kernel_sizes=(5, 3, 1), dilations=(1, 2, 1)))
        c.model.q.hidden = 32
        c.frame_objective.update(num_clusters=8, kmeans_frames=2000, kmeans_steps=20, pc_frames=64)
        c.optim.frame.warmup_steps = 1
        c.train.update(steps=4, batch_size=4, log_every=2, ckpt_every=2, progress=False)
    elif arg == "paper":
        # L2D-H12: HuBERT Base (N = 0, M = 12) from the waveform, h with d^l = 1024 and d^L = 256,
        # q_φ 256 → 2048 → 768; the paper's three optimizers (frame 1e-6 → 1e-4 over 10 %, utt 1e-3, q 1e-6).
        steps = 100_000
        c.data.crop_seconds = 5.0
        c.model.update(frozen_layers=0, trainable_layers=12, utt_input="features")
        c.model.frame.update(size="base", hidden=768, heads=12, mlp=3072, frontend="waveform", feat_proj_norm=True,
                             feat_dropout=0.0, dtype="bfloat16")
        c.model.utt = ConfigDict(_ecapa("learn2diss"))
        c.model.q.hidden = 2048
        c.frame_objective.update(targets="layer", target_layer=9, num_clusters=2048, kmeans_frames=500_000,
                                 kmeans_steps=1000, pc_frames=4096)
        c.utt_objective.num_clusters = 2000
        c.optim.frame = _optim(1e-4, "warmup_linear_decay", warmup_steps=steps // 10, end_lr_frac=0.01, clip_norm=0.0)
        c.optim.utt = _optim(1e-3, clip_norm=0.0)
        c.optim.q = _optim(1e-6, clip_norm=0.0)
        c.train.update(steps=steps, batch_size=32, log_every=100, ckpt_every=2000)
    elif arg:
        raise ValueError(f"unknown variant {arg!r}; use tiny or paper")
    return c
