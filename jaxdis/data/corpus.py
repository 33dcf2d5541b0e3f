"""Corpora: a table of utterances (utt_id, path, speaker, text, attributes) from a manifest,
a LibriSpeech tree or the built-in eSpeak NG corpus; deterministic splits; loading audio.

Manifest (CSV or JSONL): ``path`` (relative to the manifest, or absolute), ``speaker``,
optional ``text`` and ``utt_id``; every other column is kept as a string attribute.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from jaxdis.data.audio import AudioError, load_audio

log = logging.getLogger("jaxdis.data")

CORE_COLUMNS = ("utt_id", "path", "speaker", "text")
PROGRESS_MIN_FILES = 500   # show a progress bar when loading at least this many files
MAX_NAMED = 5              # bad files named in the skip warning


def default_cache_dir() -> str:
    """$JAXDIS_CACHE, else ~/.cache/jaxdis."""
    return os.environ.get("JAXDIS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "jaxdis")


@dataclass
class Corpus:
    """Utterances as a table: utt_id, path (absolute), speaker, text, then attributes (all str)."""

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
        """(train, heldout), deterministic from `seed` and independent of row order.

        by="speaker": whole voices held out (unseen-voice evaluation). by="utterance": within
        each speaker, that fraction of its utterances held out (every speaker with two or
        more utterances is on both sides). by=<any other column>, e.g. "sentence": whole
        groups of that column held out (unseen sentences)."""
        if not 0 < heldout_frac < 1:
            raise ValueError(f"heldout_frac must be in (0, 1), got {heldout_frac}")
        if by == "utterance":
            is_held = self._utterance_heldout(heldout_frac, seed)
        elif by in self.table.columns:
            is_held = self._group_heldout(by, heldout_frac, seed)
        else:
            raise ValueError(f"split by {by!r}: use 'speaker', 'utterance' or a column of {self.name} "
                             f"({', '.join(self.table.columns)})")
        return self.subset(~is_held), self.subset(is_held)

    def _group_heldout(self, column: str, frac: float, seed: int) -> np.ndarray:
        groups = np.array(sorted(self.table[column].unique()))
        if len(groups) < 2:
            raise ValueError(f"{self.name}: a split by {column!r} needs at least 2 values, found {len(groups)}")
        n_held = min(max(1, round(frac * len(groups))), len(groups) - 1)
        held = groups[np.random.default_rng(seed).permutation(len(groups))[:n_held]]
        return self.table[column].isin(set(held)).to_numpy()

    def _utterance_heldout(self, frac: float, seed: int) -> np.ndarray:
        if len(self) < 2:
            raise ValueError(f"{self.name}: an utterance split needs at least 2 utterances")
        rng = np.random.default_rng(seed)
        is_held = np.zeros(len(self), bool)
        utt = self.table["utt_id"].to_numpy()
        for _, rows in sorted(self.table.groupby("speaker").indices.items()):
            rows = rows[np.argsort(utt[rows])]      # row order must not matter
            if len(rows) < 2:
                continue                            # a single utterance stays in train
            n_held = min(max(1, round(frac * len(rows))), len(rows) - 1)
            is_held[rows[rng.permutation(len(rows))[:n_held]]] = True
        return is_held


def _finish(table: pd.DataFrame, name: str, source: str) -> Corpus:
    """Checks the core columns and puts them first; every column becomes a string."""
    table = table.fillna("").astype(str)
    if "text" not in table.columns:
        table["text"] = ""
    if len(table) == 0:
        raise ValueError(f"{source}: no utterances")
    for col in ("path", "speaker", "utt_id"):
        empty = np.flatnonzero((table[col].str.strip() == "").to_numpy())
        if len(empty):
            raise ValueError(f"{source}: {len(empty)} row(s) have an empty {col!r} (first: row {empty[0] + 1})")
    dup = table["utt_id"][table["utt_id"].duplicated()]
    if len(dup):
        raise ValueError(f"{source}: utterance ids are not unique ({len(dup)} repeated, e.g. {dup.iloc[0]!r}); "
                         "add a unique 'utt_id' column")
    cols = list(CORE_COLUMNS) + [c for c in table.columns if c not in CORE_COLUMNS]
    return Corpus(table[cols].reset_index(drop=True), name)


def _read_table(path: str) -> pd.DataFrame:
    """All cells as strings, as written in the file ("31", not "31.0"); missing cells are ""."""
    if not path.endswith((".jsonl", ".json")):
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {n}: not JSON ({err.msg}); a JSONL manifest has one object "
                                 "per line") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}, line {n}: expected a JSON object, got {type(row).__name__}")
            rows.append({k: _cell(v) for k, v in row.items()})
    return pd.DataFrame(rows).fillna("")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, (bool, list, dict)) else str(value)


def load_manifest(path: str) -> Corpus:
    """A CSV or JSONL manifest; relative paths are relative to the manifest's folder.
    Without a ``utt_id`` column, an utterance's id is its path relative to that folder,
    without extension (stable across machines)."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"manifest not found: {path}")
    table = _read_table(path)
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in ("path", "speaker") if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(table.columns)})")
    root = os.path.dirname(path)
    paths = table["path"].astype(str).str.strip()
    table["path"] = [os.path.normpath(p if os.path.isabs(p) else os.path.join(root, p)) if p else "" for p in paths]
    if "utt_id" not in table.columns:
        table["utt_id"] = [os.path.splitext(os.path.relpath(p, root))[0] if p else "" for p in table["path"]]
    return _finish(table, os.path.splitext(os.path.basename(path))[0], path)


def load_librispeech(root: str) -> Corpus:
    """The LibriSpeech layout: speaker/chapter/*.flac with chapter transcripts *.trans.txt.
    Attributes: chapter (and gender from SPEAKERS.TXT when present one level up or here)."""
    root = os.path.abspath(root)
    rows = []
    for trans in sorted(glob.glob(os.path.join(root, "*", "*", "*.trans.txt"))):
        chapter_dir = os.path.dirname(trans)
        speaker, chapter = os.path.relpath(chapter_dir, root).split(os.sep)
        with open(trans) as f:
            for line in f:
                utt, _, text = line.strip().partition(" ")
                if utt:
                    rows.append({"utt_id": utt, "path": os.path.join(chapter_dir, utt + ".flac"),
                                 "speaker": speaker, "text": text, "chapter": chapter})
    if not rows:
        raise ValueError(f"{root}: no speaker/chapter/*.trans.txt found; is this a LibriSpeech root?")
    table = pd.DataFrame(rows)
    genders = _librispeech_genders(root)
    if genders:
        table["gender"] = table["speaker"].map(genders).fillna("")
    return _finish(table, os.path.basename(root), root)


def _librispeech_genders(root: str) -> dict[str, str]:
    """{speaker: "female"|"male"} from SPEAKERS.TXT (``ID | SEX | SUBSET | MINUTES | NAME``)."""
    for candidate in (os.path.join(root, "SPEAKERS.TXT"), os.path.join(os.path.dirname(root), "SPEAKERS.TXT")):
        if os.path.isfile(candidate):
            out = {}
            with open(candidate, errors="replace") as f:
                for line in f:
                    parts = [p.strip() for p in line.split("|")]
                    if not line.startswith(";") and len(parts) >= 2 and parts[1] in ("F", "M"):
                        out[parts[0]] = "female" if parts[1] == "F" else "male"
            return out
    return {}


def load_corpus(spec: str, cache_dir: str | None = None) -> Corpus:
    """A corpus from "builtin", "builtin:tiny", a manifest (.csv/.jsonl), a folder holding a
    manifest.csv, or a LibriSpeech root. The built-in corpus is synthesized on first use."""
    spec = str(spec)
    if spec == "builtin" or spec.startswith("builtin:"):
        from jaxdis.data.builtin import builtin_manifest

        variant = spec.partition(":")[2] or "default"
        corpus = load_manifest(builtin_manifest(variant, cache_dir))
        corpus.name = f"builtin-{variant}"
        return corpus
    if os.path.isdir(spec):
        for name in ("manifest.csv", "manifest.jsonl"):
            if os.path.isfile(os.path.join(spec, name)):
                return load_manifest(os.path.join(spec, name))
        return load_librispeech(spec)
    if spec.endswith((".csv", ".jsonl", ".json")):
        return load_manifest(spec)
    raise ValueError(f"corpus {spec!r} not found: give 'builtin', 'builtin:tiny', a manifest .csv/.jsonl, "
                     "or a LibriSpeech folder")


def map_audio(corpus: Corpus, fn: Callable[[str], object], desc: str = "", progress: bool = True,
              workers: int | None = None) -> Iterator[object]:
    """fn(path) for each row in order, in a few threads (decoding releases the GIL); an
    AudioError raised by fn is yielded, not raised, so the caller decides what to do."""
    from tqdm.auto import tqdm

    def call(path):
        try:
            return fn(path)
        except AudioError as err:
            return err

    paths = corpus.table["path"].tolist()
    workers = workers or min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        yield from tqdm(pool.map(call, paths), total=len(paths), desc=desc or f"loading {corpus.name}",
                        unit="file", disable=not progress or len(paths) < PROGRESS_MIN_FILES, leave=False)


def summarize_bad(bad: list[AudioError], total: int) -> str:
    """One line: how many files were bad, and the first few by name and reason."""
    names = "; ".join(f"{e.path} ({e.reason})" for e in bad[:MAX_NAMED])
    more = f"; and {len(bad) - MAX_NAMED} more" if len(bad) > MAX_NAMED else ""
    return f"skipped {len(bad)} of {total} audio files that could not be used: {names}{more}"


def load_waveforms(corpus: Corpus, sample_rate: int = 16000, skip_bad: bool = False,
                   progress: bool = True) -> tuple[Corpus, list[np.ndarray]]:
    """(kept corpus, mono float32 waveforms at `sample_rate`), rows aligned.

    A bad file raises AudioError naming it (and counting the others); with skip_bad it is
    dropped and counted in one warning line naming the first few, never silently."""
    results = list(map_audio(corpus, lambda p: load_audio(p, sample_rate), progress=progress))
    bad = [r for r in results if isinstance(r, AudioError)]
    if bad and not skip_bad:
        more = (f" (and {len(bad) - 1} more bad file(s) in {corpus.name}; skip them with skip_bad=True, "
                "--config.data.skip_bad_audio=True or --skip-bad)") if len(bad) > 1 else ""
        raise AudioError(bad[0].path, bad[0].reason + more)
    if bad:
        log.warning("%s: %s", corpus.name, summarize_bad(bad, len(results)))
    keep = [i for i, r in enumerate(results) if not isinstance(r, AudioError)]
    return corpus.subset(keep), [results[i] for i in keep]
