"""The built-in corpus: English accents × voice variants of eSpeak NG reading the same
sentences, with per-voice and per-utterance rate and pitch jitter, random gain and light
noise. Every voice reads every sentence, so content and voice are fully crossed (what
ridge residualization and the disentanglement probes need).

Generated on first use into ``<cache>/builtin/<variant>-v<N>/`` (a temporary folder
renamed when complete, so a killed generation never looks finished). Labels come from
the voice: speaker (accent+variant), gender, accent.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from jaxdis.data.sentences import SENTENCES

log = logging.getLogger("jaxdis.data")

RECIPE_VERSION = 1
SAMPLE_RATE = 16000

ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
FEMALE = ("f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "aunty", "belinda", "linda", "steph",
          "steph2", "steph3", "anika", "grandma")
MALE = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Adam", "Alex", "Andy", "benjamin", "boris", "caleb",
        "david", "ed", "edward", "john", "max", "Michael", "paul", "rob", "robert", "zac", "grandpa")


@dataclass(frozen=True)
class Recipe:
    accents: tuple[str, ...]
    per_gender: int          # female and male variants per accent
    num_sentences: int
    seed: int = 0


RECIPES = {
    "default": Recipe(ACCENTS, per_gender=3, num_sentences=len(SENTENCES)),   # 42 voices × 200 sentences
    "tiny": Recipe(("en-us", "en-gb-scotland"), per_gender=2, num_sentences=6),  # 8 voices × 6 sentences
}


def voices(recipe: Recipe) -> list[dict]:
    """Voices of a recipe: each accent gets its own rotation of female and male variants,
    a base speaking rate and a base pitch."""
    rng = np.random.default_rng([recipe.seed, 1])
    out = []
    for a, accent in enumerate(recipe.accents):
        for gender, pool in (("female", FEMALE), ("male", MALE)):
            for j in range(recipe.per_gender):
                variant = pool[(a * recipe.per_gender + j) % len(pool)]
                out.append({"speaker": f"{accent}+{variant}", "accent": accent, "variant": variant, "gender": gender,
                            "base_rate": float(rng.uniform(150, 185)), "base_pitch": float(rng.uniform(38, 62))})
    return out


def espeak_binary() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng not found; the built-in corpus is synthesized with it. "
                           "Install it with `apt-get install espeak-ng` (scripts/install.sh does this).")
    return exe


def synthesize(text: str, voice: str, rate: int, pitch: int) -> tuple[np.ndarray, int]:
    """eSpeak NG speech for `text` (samples, sample rate)."""
    import soundfile as sf

    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        cmd = [espeak_binary(), "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", tmp.name, text]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"espeak-ng failed for voice {voice}: {proc.stderr.strip()}")
        data, sr = sf.read(tmp.name, dtype="float32")
    return data, sr


def _render_voice(args) -> list[dict]:
    """All sentences of one voice → 16 kHz WAVs under out_dir; returns manifest rows."""
    import librosa
    import soundfile as sf

    voice, sentence_ids, out_dir, seed = args
    rng = np.random.default_rng([seed, 2, zlib.crc32(voice["speaker"].encode())])
    rows = []
    os.makedirs(os.path.join(out_dir, "wav", voice["speaker"]), exist_ok=True)
    for sid in sentence_ids:
        rate = int(round(voice["base_rate"] + rng.uniform(-15, 15)))
        pitch = int(np.clip(round(voice["base_pitch"] + rng.uniform(-6, 6)), 0, 99))
        wave, sr = synthesize(SENTENCES[sid], f"{voice['accent']}+{voice['variant']}", rate, pitch)
        wave = librosa.resample(wave, orig_sr=sr, target_sr=SAMPLE_RATE, res_type="soxr_hq")
        wave *= rng.uniform(0.3, 0.9) / max(np.abs(wave).max(), 1e-6)          # random gain
        snr_db = rng.uniform(30, 40)
        noise_rms = np.sqrt(np.mean(wave ** 2)) / 10 ** (snr_db / 20)
        wave = np.clip(wave + noise_rms * rng.standard_normal(len(wave)), -1, 1).astype(np.float32)
        rel = os.path.join("wav", voice["speaker"], f"s{sid:03d}.wav")
        sf.write(os.path.join(out_dir, rel), wave, SAMPLE_RATE, subtype="PCM_16")
        rows.append({"path": rel, "speaker": voice["speaker"], "text": SENTENCES[sid], "gender": voice["gender"],
                     "accent": voice["accent"], "variant": voice["variant"], "sentence": f"s{sid:03d}",
                     "rate": rate, "pitch": pitch, "snr_db": round(float(snr_db), 1),
                     "duration": round(len(wave) / SAMPLE_RATE, 3)})
    return rows


def generate(recipe: Recipe, out_dir: str, workers: int | None = None) -> str:
    """Synthesizes a recipe into out_dir (which must not exist yet); returns the manifest path."""
    espeak_binary()
    vs = voices(recipe)
    sentence_ids = list(range(recipe.num_sentences))
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    from tqdm.auto import tqdm

    rows = []
    jobs = [(v, sentence_ids, out_dir, recipe.seed) for v in vs]
    with ProcessPoolExecutor(workers) as pool:
        for part in tqdm(pool.map(_render_voice, jobs), total=len(jobs), desc="synthesizing voices"):
            rows.extend(part)
    manifest = os.path.join(out_dir, "manifest.csv")
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def builtin_manifest(variant: str = "default", cache_dir: str | None = None) -> str:
    """Path of the built-in corpus's manifest.csv, synthesizing it on first use."""
    from jaxdis.data.corpus import default_cache_dir

    if variant not in RECIPES:
        raise ValueError(f"unknown built-in corpus {variant!r}; known: {', '.join(RECIPES)}")
    root = os.path.join(cache_dir or default_cache_dir(), "builtin")
    final = os.path.join(root, f"{variant}-v{RECIPE_VERSION}")
    manifest = os.path.join(final, "manifest.csv")
    if os.path.exists(manifest):
        return manifest
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{variant}-", dir=root)
    recipe = RECIPES[variant]
    log.info("synthesizing the built-in corpus %r (%d voices × %d sentences) into %s", variant,
             len(voices(recipe)), recipe.num_sentences, final)
    t0 = time.perf_counter()
    try:
        generate(recipe, tmp)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first: keep theirs
            if not os.path.exists(manifest):
                raise
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("built-in corpus %r ready in %.0f s", variant, time.perf_counter() - t0)
    return manifest
