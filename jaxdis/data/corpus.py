"""Corpora: a table of utterances (path, speaker, text, attributes) from a manifest, a
LibriSpeech tree or the built-in eSpeak NG corpus; deterministic splits; loading audio.

Manifest (CSV or JSONL): ``path`` (relative to the manifest, or absolute), ``speaker``,
optional ``text``; every other column is kept as a string attribute.
"""

from __future__ import annotations

import glob
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from jaxdis.data.audio import AudioError, load_audio

log = logging.getLogger("jaxdis.data")

CORE_COLUMNS = ("utt_id", "path", "speaker", "text")


def default_cache_dir() -> str:
    """$JAXDIS_CACHE, else ~/.cache/jaxdis."""
    return os.environ.get("JAXDIS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "jaxdis")


@dataclass
class Corpus:
    """Utterances as a table: utt_id, path (absolute), speaker, text, then attributes (str)."""

    table: pd.DataFrame
    name: str = "corpus"

    def __len__(self) -> int:
        return len(self.table)

    @property
    def speakers(self) -> list[str]:
        return sorted(self.table["speaker"].unique().tolist())

    @property
    def attributes(self) -> list[str]:
        return [c for c in self.table.columns if c not in CORE_COLUMNS]

    def subset(self, indices) -> Corpus:
        """Rows by position (integer indices, or a boolean mask over rows)."""
        indices = np.asarray(indices)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        return Corpus(self.table.iloc[indices.astype(int)].reset_index(drop=True), self.name)

    def split(self, by: str = "speaker", heldout_frac: float = 0.25, seed: int = 0) -> tuple[Corpus, Corpus]:
        """(train, heldout). by="speaker": whole voices held out (unseen-voice evaluation);
        by="utterance": utterances held out. Deterministic from `seed`, independent of row order."""
        if not 0 < heldout_frac < 1:
            raise ValueError(f"heldout_frac must be in (0, 1), got {heldout_frac}")
        rng = np.random.default_rng(seed)
        if by == "speaker":
            speakers = np.array(self.speakers)
            if len(speakers) < 2:
                raise ValueError(f"{self.name}: a speaker split needs at least 2 speakers, found {len(speakers)}")
            n_held = min(max(1, round(heldout_frac * len(speakers))), len(speakers) - 1)
            held = set(speakers[rng.permutation(len(speakers))[:n_held]])
            is_held = self.table["speaker"].isin(held).to_numpy()
        elif by == "utterance":
            order = np.argsort(self.table["utt_id"].to_numpy())  # row order must not matter
            n_held = min(max(1, round(heldout_frac * len(self))), len(self) - 1)
            is_held = np.zeros(len(self), bool)
            is_held[order[rng.permutation(len(self))[:n_held]]] = True
        else:
            raise ValueError(f"split by {by!r}: use 'speaker' or 'utterance'")
        return self.subset(np.flatnonzero(~is_held)), self.subset(np.flatnonzero(is_held))


def _finish(table: pd.DataFrame, name: str, source: str) -> Corpus:
    """Checks the core columns and puts them first; every column becomes a string."""
    table = table.fillna("").astype(str)
    if "text" not in table.columns:
        table["text"] = ""
    dup = table["utt_id"][table["utt_id"].duplicated()]
    if len(dup):
        raise ValueError(f"{source}: utterance ids are not unique (e.g. {dup.iloc[0]!r}); add a unique 'utt_id' column")
    if (table["speaker"] == "").any():
        raise ValueError(f"{source}: {int((table['speaker'] == '').sum())} rows have an empty speaker")
    if len(table) == 0:
        raise ValueError(f"{source}: no utterances")
    cols = list(CORE_COLUMNS) + [c for c in table.columns if c not in CORE_COLUMNS]
    return Corpus(table[cols].reset_index(drop=True), name)


def load_manifest(path: str) -> Corpus:
    """A CSV or JSONL manifest; relative paths are relative to the manifest's folder."""
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"manifest not found: {path}")
    if path.endswith((".jsonl", ".json")):
        table = pd.read_json(path, lines=True, dtype=False)
    else:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("path", "speaker") if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, table.columns))})")
    table = table.astype(str)
    root = os.path.dirname(path)
    table["path"] = [p if os.path.isabs(p) else os.path.normpath(os.path.join(root, p)) for p in table["path"]]
    if "utt_id" not in table.columns:
        table["utt_id"] = [os.path.splitext(os.path.relpath(p, root))[0] for p in table["path"]]
    return _finish(table, os.path.splitext(os.path.basename(path))[0], path)


def load_librispeech(root: str) -> Corpus:
    """The LibriSpeech layout: speaker/chapter/*.flac with chapter transcripts *.trans.txt."""
    root = os.path.abspath(root)
    rows = []
    for trans in sorted(glob.glob(os.path.join(root, "*", "*", "*.trans.txt"))):
        chapter_dir = os.path.dirname(trans)
        speaker, chapter = os.path.relpath(chapter_dir, root).split(os.sep)
        with open(trans) as f:
            for line in f:
                if not line.strip():
                    continue
                utt, _, text = line.strip().partition(" ")
                rows.append({"utt_id": utt, "path": os.path.join(chapter_dir, utt + ".flac"), "speaker": speaker,
                             "text": text, "chapter": chapter})
    if not rows:
        raise ValueError(f"{root}: no speaker/chapter/*.trans.txt found; is this a LibriSpeech root?")
    return _finish(pd.DataFrame(rows), os.path.basename(root), root)


def load_corpus(spec: str, cache_dir: str | None = None) -> Corpus:
    """A corpus from "builtin", "builtin:tiny", a manifest (.csv/.jsonl) or a LibriSpeech root."""
    spec = str(spec)
    if spec == "builtin" or spec.startswith("builtin:"):
        from jaxdis.data.builtin import builtin_manifest

        variant = spec.partition(":")[2] or "default"
        corpus = load_manifest(builtin_manifest(variant, cache_dir))
        corpus.name = f"builtin-{variant}"
        return corpus
    if os.path.isdir(spec):
        manifest = os.path.join(spec, "manifest.csv")
        return load_manifest(manifest) if os.path.exists(manifest) else load_librispeech(spec)
    if spec.endswith((".csv", ".jsonl", ".json")):
        return load_manifest(spec)
    raise ValueError(f"corpus {spec!r}: give 'builtin', 'builtin:tiny', a manifest .csv/.jsonl or a LibriSpeech folder")


def load_waveforms(corpus: Corpus, sample_rate: int = 16000, skip_bad: bool = False,
                   progress: bool = True) -> tuple[Corpus, list[np.ndarray]]:
    """(kept corpus, waveforms). A bad file raises AudioError naming it; with skip_bad it is
    dropped and counted in one warning that names the first few — never silently."""
    from tqdm.auto import tqdm

    def read(path):
        try:
            return load_audio(path, sample_rate)
        except AudioError as err:
            return err

    paths = corpus.table["path"].tolist()
    with ThreadPoolExecutor(4) as pool:
        results = list(tqdm(pool.map(read, paths), total=len(paths), desc=f"loading {corpus.name}",
                            disable=not progress or len(paths) < 200, leave=False))
    bad = [r for r in results if isinstance(r, AudioError)]
    if bad and not skip_bad:
        more = f" ({len(bad) - 1} more bad files; set skip_bad_audio to skip them)" if len(bad) > 1 else ""
        raise AudioError(bad[0].path, bad[0].reason + more)
    if bad:
        names = "; ".join(f"{e.path} ({e.reason})" for e in bad[:5])
        log.warning("skipped %d of %d files that could not be used: %s%s", len(bad), len(paths), names,
                    " …" if len(bad) > 5 else "")
    keep = [i for i, r in enumerate(results) if not isinstance(r, AudioError)]
    return corpus.subset(keep), [results[i] for i in keep]
