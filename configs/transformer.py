"""Masked k-means prediction + pseudo-con loss on a HuBERT-style frame encoder
(jaxdis/methods/transformer.py; Learn2Diss §3.2.2).

    # default: CPU-sized (4 × 192-d layers on 80-d log-mel, MFCC k-means targets), built-in corpus
    python train.py --config configs/transformer.py --workdir runs/transformer
    # smoke test
    python train.py --config configs/transformer.py:tiny --workdir /tmp/tx --config.train.steps=4
    # paper scale: HuBERT Base from the waveform, K = 2048 targets from layer 9 of a teacher
    python train.py --config configs/transformer.py:paper --workdir runs/transformer_base \\
        --config.model.init_from_hf=/path/to/hubert-base-ls960 \\
        --config.objective.teacher=hf:/path/to/hubert-base-ls960 --config.data.corpus=/path/to/LibriSpeech
    # second HuBERT iteration from a first run: targets from its layer 3
    python train.py --config configs/transformer.py --workdir runs/transformer_it2 \\
        --config.objective.targets=layer --config.objective.teacher=runs/transformer --config.objective.target_layer=3
"""

from ml_collections import ConfigDict

from jaxdis.train.config import base_config


def get_config(arg: str | None = None):
    c = base_config()
    c.method = "transformer"
    c.data.crop_seconds = 2.0          # random crop per utterance per step

    # FrameEncoderConfig: a size preset ("tiny", "small", "base", "large") + field overrides.
    c.model = ConfigDict(dict(
        size="small",
        layers=4, hidden=192, heads=4, mlp=768,
        frontend="fbank",              # "fbank" (80-d log-mel, pairs stacked to 50 Hz) | "waveform" (conv extractor)
        fbank_norm="utterance",        # per-utterance mean/variance of each mel bin (CMVN)
        feat_proj_norm=False,          # no per-frame LayerNorm on fbank input: it would erase frame energy
        frozen_layers=-1,              # -1: train all; N >= 0: freeze the conv extractor (+ first N layers)
        dropout=0.1,
        activation_dropout=0.0,
        feat_dropout=0.1,
        dtype="float32",               # "bfloat16": bf16 compute, fp32 parameters
        matmuls="xla",                 # "xla" | "canonical" (row-major dots; not faster on CPU here)
        init_from_hf="",               # transformers HubertModel/WavLMModel/Wav2Vec2Model directory
    ))

    c.objective = ConfigDict(dict(
        targets="mfcc",                # "mfcc" (first iteration) | "layer" (k-means of a teacher's layer)
        mfcc_norm="utterance",         # fbank: MFCCs of the per-utterance CMVN'd log-mel the encoder sees | "none"
        teacher="",                    # for "layer": a jaxdis workdir, or hf:<transformers model dir>
        target_layer=9,
        num_clusters=100,
        kmeans_frames=100_000,         # frames sampled from the training crops to fit k-means
        kmeans_steps=300,
        mask_prob=0.08,                # probability of a frame starting a span (HuBERT p = 8 %)
        mask_span=10,
        min_spans=2,
        unmasked_weight=1.0,           # HuBERT's α: CE on unmasked frames. 0 in HuBERT (and :paper), 250k+
                                       # steps; in a 600-step run masked-only CE sits on the unigram plateau
                                       # for ~500 steps, and the unmasked term speeds the way off it
        pc_weight=1.0,                 # eq. 4: L = L_CE + L_PC
        tau=0.1,                       # pseudo-con temperature
        pc_frames=1024,                # masked frames per batch in the pseudo-con similarity matrix
        pc_denominator="negatives",    # eq. 3's A(t) (other clusters) | "all" (SupCon)
        pc_normalize=True,             # cosine similarities
    ))

    c.eval = ConfigDict(dict(
        layers=[2, -1],                # mean-pooled layers for the probes and embed()
        probe_all_layers=True,         # probes also on every hidden state y^0 … y^L, plus the best layer
        content_label="sentence",      # corpus column the content probe predicts
        probe_speakers=8,              # held-out speakers whose utterances the probes use (0: all)
        probe_folds=0,                 # content probe cross-validated over those speakers, each utterance tested
                                       # once (0: leave one speaker out; k: k folds), s.e. clustered by speaker,
                                       # paired with the untrained model on the same folds; None: one split
        probe_test_frac=0.25,          # content probe with probe_folds=None: fraction of the speakers tested on
        sid_budgets=[10.0],            # seconds per speaker for the few-label speaker-ID protocol
        sid_repeats=3,
        compare_untrained=True,        # also evaluate the untrained model (same utterances and folds: paired)
    ))

    c.optim.name = "adamw"
    c.optim.lr = 1e-3
    c.optim.schedule = "warmup_linear_decay"
    c.optim.warmup_steps = 50
    c.optim.end_lr_frac = 0.05
    c.optim.weight_decay = 0.01
    c.optim.clip_norm = 1.0
    c.optim.b2 = 0.98
    c.train.steps = 600
    c.train.batch_size = 8
    c.train.log_every = 50
    c.train.ckpt_every = 500

    if arg == "tiny":
        c.data.corpus = "builtin:tiny"
        c.data.crop_seconds = 0.5
        c.model.update(size="tiny", layers=2, hidden=32, heads=4, mlp=64)
        c.objective.update(num_clusters=8, kmeans_frames=2000, kmeans_steps=20, pc_frames=128)
        c.eval.update(layers=[-1], sid_budgets=[2.0], sid_repeats=1, probe_speakers=0, probe_test_frac=0.5)
        c.train.update(steps=4, batch_size=4, log_every=2, ckpt_every=4, progress=False)
    elif arg == "paper":
        # HuBERT Base from the waveform, Learn2Diss's schedule: 1e-6 → 1e-4 over 10k steps, then back.
        c.data.crop_seconds = 5.0
        c.model.update(size="base", layers=12, hidden=768, heads=12, mlp=3072, frontend="waveform", feat_proj_norm=True,
                       frozen_layers=0, feat_dropout=0.0, dtype="bfloat16")
        c.objective.update(targets="layer", target_layer=9, num_clusters=2048, kmeans_frames=500_000,
                           kmeans_steps=1000, pc_frames=4096, unmasked_weight=0.0)
        c.eval.update(layers=[6, 9, 12], sid_budgets=[10.0, 30.0], sid_repeats=5, probe_speakers=0)
        c.optim.update(name="adam", lr=1e-4, warmup_steps=10_000, end_lr_frac=0.01, weight_decay=0.0)
        c.train.update(steps=100_000, batch_size=32, log_every=100, ckpt_every=2000, eval_every=10_000)
    elif arg:
        raise ValueError(f"unknown variant {arg!r}; use tiny or paper")
    return c
