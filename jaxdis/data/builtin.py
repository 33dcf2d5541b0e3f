"""The built-in corpus: English accents × voice variants of eSpeak NG, every voice reading
every sentence, so voice and content are fully crossed (what ridge residualization and
the disentanglement probes need).

Each voice is an accent plus one of eSpeak NG's human-sounding variants (gender read from
the variant file), reshaped by its own pitch, pitch-range and formant (vocal-tract)
scaling, speaking rate and word gap. Each utterance adds rate and pitch jitter, a random
channel tilt, gain, leading/trailing silence and white or pink noise at 30-40 dB SNR.
Everything is drawn from the recipe's seed: the same recipe gives the same corpus.

Generated on first use into ``<cache>/builtin/<variant>/`` (written to a temporary folder
renamed when complete, under a lock, so a killed generation never looks finished and two
processes never generate at once). Labels: speaker (= voice id), gender, accent, variant,
sentence (id), text.
"""

from __future__ import annotations

import dataclasses
import fcntl
import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np
import pandas as pd

from jaxdis.data import espeak
from jaxdis.data.sentences import SENTENCES

RECIPE_VERSION = 3          # bump when the synthesis code changes what a recipe produces
# 3: voices named by eSpeak voice file, so en-gb voices use their variants (in 2 they were all
#    plain en-gb), and at most espeak.MAX_PRIVATE_VARIANTS variants per data folder
SAMPLE_RATE = 16000

ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
           "en-us-nyc")
# Variants that declare a gender but are effects rather than human voices.
EFFECT_VARIANTS = frozenset({"anikaRobot", "AnxiousAndy", "croak", "Demonic", "Storm", "UniRobot", "whisper",
                             "whisperf"})


@dataclass(frozen=True)
class Recipe:
    """What to synthesize: voices = accents × (per_gender female + per_gender male variants)."""

    accents: tuple[str, ...]
    per_gender: int                   # female and male voices per accent
    num_sentences: int                # the first n of SENTENCES
    seed: int = 0
    rate: tuple[float, float] = (140.0, 195.0)        # per-voice words per minute
    word_gap: tuple[int, ...] = (0, 0, 0, 1, 2)       # per-voice pause between words (10 ms units)
    f0_scale: tuple[float, float] = (0.87, 1.15)      # per-voice pitch scaling of the variant
    range_scale: tuple[float, float] = (0.6, 1.5)     # per-voice pitch-range scaling
    formant_scale: tuple[float, float] = (0.93, 1.07)  # per-voice vocal-tract scaling
    formant_jitter: float = 0.02                      # per-formant extra scaling, ±
    rate_jitter: float = 0.08                         # per-utterance, relative ±
    pitch_jitter: int = 8                             # per-utterance -p offset from 50, ±
    snr_db: tuple[float, float] = (30.0, 40.0)        # per-utterance noise level
    pad_seconds: tuple[float, float] = (0.05, 0.35)   # per-utterance leading/trailing silence
    tilt: float = 0.5                                 # per-utterance channel tilt coefficient, max |a|
    peak: tuple[float, float] = (0.25, 0.9)           # per-utterance peak level (gain)


RECIPES = {
    "default": Recipe(ACCENTS, per_gender=3, num_sentences=len(SENTENCES)),        # 48 voices × 200
    "tiny": Recipe(("en-us", "en-gb-scotland", "en-029"), per_gender=1, num_sentences=8),  # 6 voices × 8
    # Four times the voices at the same size, for voice-attribute probes (gender, accent)
    # that are scored on held-out voices and need many of them: 192 voices × 25.
    "voices": Recipe(ACCENTS, per_gender=12, num_sentences=25, seed=1),
}


@dataclass(frozen=True)
class Voice:
    index: int              # position in the recipe's voice list (seeds its utterances)
    speaker: str            # "en-gb-scotland+f3"
    accent: str
    variant: str            # eSpeak NG base variant
    gender: str
    custom: str             # name of this voice's own variant file
    base: str               # eSpeak NG voice file of the accent ("gmw/en"), what synthesis names
    rate: float
    word_gap: int
    shape: espeak.VoiceShape


def voices(recipe: Recipe, genders: dict[str, str], accents: dict[str, str] | None = None) -> list[Voice]:
    """The recipe's voices. Each accent gets its own slice of a seeded shuffle of the female
    and male variant pools, so variants spread over accents and no accent repeats one.
    `accents`: the installed ones, {accent: voice file} (``espeak.english_voices()``); recipe
    accents not among them are left out. None: every recipe accent, named by itself."""
    rng = np.random.default_rng([recipe.seed, 1])
    pools = {g: [v for v in sorted(genders) if genders[v] == g and v not in EFFECT_VARIANTS]
             for g in ("female", "male")}
    pools = {g: [p[i] for i in rng.permutation(len(p))] for g, p in pools.items()}
    for g, p in pools.items():
        if len(p) < recipe.per_gender:
            raise espeak.EspeakError(f"only {len(p)} {g} eSpeak NG variants found; the recipe needs "
                                     f"{recipe.per_gender}")
    files = {a: a for a in recipe.accents} if accents is None else accents
    accents = [a for a in recipe.accents if a in files]
    out = []
    for a, accent in enumerate(accents):
        for gender in ("female", "male"):
            pool = pools[gender]
            for j in range(recipe.per_gender):
                variant = pool[(a * recipe.per_gender + j) % len(pool)]
                k = len(out)
                shape = espeak.VoiceShape(
                    f0_scale=round(float(rng.uniform(*recipe.f0_scale)), 3),
                    range_scale=round(float(rng.uniform(*recipe.range_scale)), 3),
                    formant_scale=round(float(rng.uniform(*recipe.formant_scale)), 3),
                    formant_jitter=tuple(round(float(x), 3) for x in
                                         1 + rng.uniform(-recipe.formant_jitter, recipe.formant_jitter, 9)))
                out.append(Voice(k, f"{accent}+{variant}", accent, variant, gender, f"jaxdis{k:03d}", files[accent],
                                 rate=round(float(rng.uniform(*recipe.rate)), 1),
                                 word_gap=int(rng.choice(recipe.word_gap)), shape=shape))
    return out


def _fingerprint(recipe: Recipe) -> str:
    """Changes when the recipe, the sentences it reads or the synthesis code change."""
    blob = json.dumps({"recipe": dataclasses.asdict(recipe), "version": RECIPE_VERSION,
                       "sentences": SENTENCES[:recipe.num_sentences]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------- synthesis


def _noise(rng: np.random.Generator, n: int, color: str) -> np.ndarray:
    """Unit-RMS white or pink (1/f power) noise of length n."""
    from scipy import fft

    m = fft.next_fast_len(n, real=True) if color == "pink" else n
    noise = rng.standard_normal(m)
    if color == "pink":
        spec = fft.rfft(noise)
        spec /= np.sqrt(np.maximum(np.arange(len(spec)), 1.0))
        noise = fft.irfft(spec, m)[:n]
    return noise / max(np.sqrt(np.mean(noise ** 2)), 1e-12)


def render_utterance(voice: Voice, sid: int, recipe: Recipe, out_dir: str, data_path: str | None) -> dict:
    """Synthesizes one sentence with one voice, degrades it, writes a 16 kHz WAV; returns its row."""
    import soundfile as sf
    import soxr
    from scipy.signal import lfilter

    rng = np.random.default_rng([recipe.seed, 2, voice.index, sid])
    rate = int(round(voice.rate * (1 + rng.uniform(-recipe.rate_jitter, recipe.rate_jitter))))
    pitch = int(np.clip(50 + rng.integers(-recipe.pitch_jitter, recipe.pitch_jitter + 1), 0, 99))
    voice_name = f"{voice.base}+{voice.custom}" if data_path else f"{voice.base}+{voice.variant}"
    wave, sr = espeak.synthesize(SENTENCES[sid], voice_name, rate, pitch, voice.word_gap, path=data_path)
    wave = soxr.resample(wave.astype(np.float64), sr, SAMPLE_RATE, quality="HQ")      # (N,)

    # Channel: a first-order tilt, brighter (pre-emphasis) or duller (one-pole low-pass).
    a = float(rng.uniform(0, recipe.tilt))
    channel = str(rng.choice(["bright", "dull", "flat"]))
    if channel == "bright":
        wave = lfilter([1.0, -a], [1.0], wave)
    elif channel == "dull":
        wave = lfilter([1.0 - a], [1.0, -a], wave)
    pad = (rng.uniform(*recipe.pad_seconds, size=2) * SAMPLE_RATE).astype(int)
    wave = np.concatenate([np.zeros(pad[0]), wave, np.zeros(pad[1])])
    wave *= rng.uniform(*recipe.peak) / max(np.abs(wave).max(), 1e-9)
    speech = wave[np.abs(wave) > 0.02 * np.abs(wave).max()]        # RMS over active samples
    snr_db = float(rng.uniform(*recipe.snr_db))
    color = str(rng.choice(["white", "pink"]))
    rms = np.sqrt(np.mean(speech ** 2)) if speech.size else 0.0
    wave = wave + rms / 10 ** (snr_db / 20) * _noise(rng, len(wave), color)
    wave = np.clip(wave, -1, 1).astype(np.float32)

    sentence = f"s{sid:03d}"
    rel = os.path.join("wav", voice.speaker, f"{sentence}.wav")
    sf.write(os.path.join(out_dir, rel), wave, SAMPLE_RATE, subtype="PCM_16")
    return {"utt_id": f"{voice.speaker}_{sentence}", "path": rel, "speaker": voice.speaker,
            "text": SENTENCES[sid], "gender": voice.gender, "accent": voice.accent, "variant": voice.variant,
            "sentence": sentence, "words": len(SENTENCES[sid].split()), "rate": rate, "pitch": pitch,
            "word_gap": voice.word_gap, "f0_scale": voice.shape.f0_scale,
            "formant_scale": voice.shape.formant_scale, "channel": channel, "tilt": round(a, 3),
            "noise": color, "snr_db": round(snr_db, 1), "duration": round(len(wave) / SAMPLE_RATE, 3)}


def _private_data_dirs(vs: list[Voice], variants: dict[str, str], root: str) -> dict[str, str]:
    """{custom variant name: eSpeak NG data folder holding it}: the voices in groups of
    `espeak.MAX_PRIVATE_VARIANTS`, one folder each, every voice checked to use its variant."""
    size = espeak.MAX_PRIVATE_VARIANTS
    out = {}
    for start in range(0, len(vs), size):
        group = vs[start:start + size]
        path = espeak.private_data_dir(os.path.join(root, f"{start // size:03d}"),
                                       {v.custom: variants[v.custom] for v in group})
        for v in group:
            espeak.check_variant_loads(path, v.base, v.custom)
        out.update((v.custom, path) for v in group)
    return out


def generate(recipe: Recipe, out_dir: str, workers: int | None = None, progress: bool = True) -> str:
    """Synthesizes `recipe` into out_dir; returns the manifest path. Work runs in a few
    threads, each driving its own espeak-ng process (the heavy part)."""
    from tqdm.auto import tqdm

    genders = espeak.variant_genders()
    vs = voices(recipe, genders, espeak.english_voices())
    if not vs:
        raise espeak.EspeakError(f"none of the accents {recipe.accents} is installed in eSpeak NG")
    variants = {v.custom: espeak.shaped_variant(espeak.read_variant(v.variant), v.shape, v.custom) for v in vs}
    data_paths = _private_data_dirs(vs, variants, os.path.join(out_dir, ".espeak"))
    os.makedirs(os.path.join(out_dir, "voices"))
    for v in vs:
        os.makedirs(os.path.join(out_dir, "wav", v.speaker))
        with open(os.path.join(out_dir, "voices", f"{v.speaker}.voice"), "w") as f:
            f.write(f"// {v.speaker}: eSpeak NG {v.accent} + {v.variant}, {dataclasses.asdict(v)}\n")
            f.write(variants[v.custom])

    jobs = [(v, sid) for v in vs for sid in range(recipe.num_sentences)]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = workers or max(1, min(4, cpus))
    rows = [None] * len(jobs)
    with ThreadPoolExecutor(workers) as pool, \
            tqdm(total=len(jobs), desc="synthesizing", unit="utt", disable=not progress, file=sys.stderr) as bar:
        futures = {pool.submit(render_utterance, v, sid, recipe, out_dir, data_paths[v.custom]): i
                   for i, (v, sid) in enumerate(jobs)}
        for fut in as_completed(futures):
            rows[futures[fut]] = fut.result()
            bar.update()
    shutil.rmtree(os.path.join(out_dir, ".espeak"))
    manifest = os.path.join(out_dir, "manifest.csv")
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


# ------------------------------------------------------------------------------- cache


def _is_complete(folder: str, fingerprint: str) -> bool:
    try:
        with open(os.path.join(folder, "recipe.json")) as f:
            return json.load(f)["fingerprint"] == fingerprint and os.path.isfile(os.path.join(folder, "manifest.csv"))
    except (OSError, ValueError, KeyError):
        return False


def builtin_manifest(variant: str = "default", cache_dir: str | None = None, progress: bool = True) -> str:
    """Path of the built-in corpus's manifest.csv, synthesizing it on first use (or when its
    recipe changed) into ``<cache_dir>/builtin/<variant>/``."""
    from jaxdis.data.corpus import default_cache_dir

    if variant not in RECIPES:
        raise ValueError(f"unknown built-in corpus {variant!r}; known: {', '.join(RECIPES)}")
    recipe = RECIPES[variant]
    fingerprint = _fingerprint(recipe)
    root = os.path.join(cache_dir or default_cache_dir(), "builtin")
    final = os.path.join(root, variant)
    manifest = os.path.join(final, "manifest.csv")
    if _is_complete(final, fingerprint):
        return manifest
    espeak.binary()  # fail early, with the install hint
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, f".{variant}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)           # another process may be generating it
        if _is_complete(final, fingerprint):
            return manifest
        for stale in glob.glob(os.path.join(root, f".{variant}.tmp-*")):  # from a killed run
            shutil.rmtree(stale, ignore_errors=True)
        tmp = tempfile.mkdtemp(prefix=f".{variant}.tmp-", dir=root)
        n = recipe.num_sentences * recipe.per_gender * 2 * len(recipe.accents)
        print(f"jaxdis: synthesizing the built-in corpus {variant!r} with eSpeak NG (about {n} utterances) "
              f"into {final}; this happens once", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            generate(recipe, tmp, progress=progress)
            table = pd.read_csv(os.path.join(tmp, "manifest.csv"))
            info = {"fingerprint": fingerprint, "recipe": dataclasses.asdict(recipe), "version": RECIPE_VERSION,
                    "espeak_ng": espeak.version(), "utterances": len(table), "speakers": table["speaker"].nunique(),
                    "hours": round(float(table["duration"].sum()) / 3600, 4),
                    "seconds_to_generate": round(time.perf_counter() - t0, 1)}
            with open(os.path.join(tmp, "recipe.json"), "w") as f:
                json.dump(info, f, indent=2)
            if os.path.exists(final):              # an outdated or broken corpus: replace it
                old = tempfile.mkdtemp(prefix=f".{variant}.tmp-old-", dir=root)
                os.rename(final, os.path.join(old, variant))
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            for stale in glob.glob(os.path.join(root, f".{variant}.tmp-old-*")):
                shutil.rmtree(stale, ignore_errors=True)
    print(f"jaxdis: built-in corpus {variant!r} ready in {info['seconds_to_generate']:.0f} s: "
          f"{info['utterances']} utterances, {info['speakers']} voices, {info['hours']:.2f} h -> {final}",
          file=sys.stderr, flush=True)
    return manifest
