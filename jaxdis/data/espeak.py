"""A thin wrapper around the eSpeak NG command-line synthesizer (Debian package `espeak-ng`).

What the built-in corpus needs from it: the English accents and voice variants installed
(gender read from each variant file), per-voice variant files with their own pitch and
formant scaling (a private copy of the data folder whose other entries are symlinks),
and one call that returns a waveform.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

INSTALL_HINT = "install it with `apt-get install espeak-ng` (Debian/Ubuntu; the README's set-up command does this)"


class EspeakError(RuntimeError):
    """eSpeak NG is missing or failed."""


def binary() -> str:
    """Path of the espeak-ng executable, or EspeakError saying how to install it."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise EspeakError(f"espeak-ng not found on PATH; the built-in corpus is synthesized with it: {INSTALL_HINT}")
    return exe


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([binary(), *args], capture_output=True, **kw)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace") if isinstance(proc.stderr, bytes) else proc.stderr
        raise EspeakError(f"espeak-ng {' '.join(args[:-1])} failed ({proc.returncode}): {err.strip()}")
    return proc


def version() -> str:
    """e.g. '1.51'."""
    out = _run(["--version"], text=True).stdout
    m = re.search(r"text-to-speech:\s*(\S+)", out)
    return m.group(1) if m else out.strip()


def data_dir() -> str:
    """The installed espeak-ng-data folder (from `espeak-ng --version`: "Data at: ...")."""
    out = _run(["--version"], text=True).stdout
    m = re.search(r"Data at:\s*(\S+)", out)
    if not m or not os.path.isdir(m.group(1)):
        raise EspeakError(f"cannot find espeak-ng-data from `espeak-ng --version`: {out.strip()!r}")
    return m.group(1)


def english_voices() -> dict[str, str]:
    """{accent: voice file} of the English eSpeak NG voices (not MBROLA ones), e.g.
    {'en-gb': 'gmw/en', 'en-us': 'gmw/en-US', ...}. Synthesis names voices by file: in 1.51
    `-v en-gb+f4` silently ignores the variant (it speaks plain en-gb), `-v gmw/en+f4` does not."""
    out = _run(["--voices=en"], text=True).stdout
    voices = {}
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5 and parts[1].startswith("en") and not parts[4].startswith("mb/"):
            voices.setdefault(parts[1], parts[4])
    return dict(sorted(voices.items()))


def variant_genders(data: str | None = None) -> dict[str, str]:
    """{variant name: "female" | "male"} for the variant files that declare a gender."""
    folder = os.path.join(data or data_dir(), "voices", "!v")
    genders = {}
    for name in sorted(os.listdir(folder)):
        try:
            with open(os.path.join(folder, name), errors="replace") as f:
                for line in f:
                    words = line.split()
                    if len(words) >= 2 and words[0].lower() == "gender" and words[1].lower() in ("male", "female"):
                        genders[name] = words[1].lower()
                        break
        except (IsADirectoryError, OSError):
            continue
    return genders


@dataclass(frozen=True)
class VoiceShape:
    """How one voice differs from its base variant: pitch (f0) and vocal-tract scaling."""

    f0_scale: float = 1.0         # multiplies the variant's base and top pitch
    range_scale: float = 1.0      # multiplies the variant's pitch range (top - base)
    formant_scale: float = 1.0    # multiplies every formant frequency (shorter tract > 1)
    formant_jitter: tuple[float, ...] = ()   # extra per-formant factors, formants 0..8


DEFAULT_PITCH = (82, 118)  # eSpeak NG's built-in pitch when a variant has no "pitch" line


def shaped_variant(text: str, shape: VoiceShape, name: str) -> str:
    """A variant file's text with pitch and formant frequencies rescaled by `shape`."""
    out, seen_formants, has_pitch = [], set(), False
    for line in text.splitlines():
        words = line.split()
        key = words[0].lower() if words else ""
        if key == "name":
            out.append(f"name {name}")
        elif key == "pitch" and len(words) >= 3:
            out.append(_pitch_line(float(words[1]), float(words[2]), shape))
            has_pitch = True
        elif key == "formant" and len(words) >= 3:
            k = int(words[1])
            seen_formants.add(k)
            words[2] = str(round(float(words[2]) * _formant_factor(shape, k)))
            out.append(" ".join(words))
        else:
            out.append(line)
    if not has_pitch:
        out.append(_pitch_line(*DEFAULT_PITCH, shape))
    for k in range(9):
        if k not in seen_formants:
            out.append(f"formant {k} {round(100 * _formant_factor(shape, k))} 100 100")
    return "\n".join(out) + "\n"


def _pitch_line(base: float, top: float, shape: VoiceShape) -> str:
    base2 = base * shape.f0_scale
    top2 = base2 + (top - base) * shape.f0_scale * shape.range_scale
    return f"pitch {round(base2)} {round(top2)}"


def _formant_factor(shape: VoiceShape, k: int) -> float:
    jitter = shape.formant_jitter[k] if k < len(shape.formant_jitter) else 1.0
    return shape.formant_scale * jitter


# eSpeak NG keeps languages and variants in one fixed-size list (N_VOICES_LIST, 350 in 1.51; the
# Debian data already fills ~230). Past it voices stop loading (named by file: an error; named by
# language: a silent fall-back to the default voice), so each private data folder holds at most
# this many variants.
MAX_PRIVATE_VARIANTS = 32


def private_data_dir(root: str, variants: dict[str, str]) -> str:
    """A copy of espeak-ng-data under `root` (symlinks) with extra variant files
    {name: text} in voices/!v; returns the folder to pass as `path=` to `synthesize`."""
    src = data_dir()
    dst = os.path.join(root, "espeak-ng-data")
    os.makedirs(os.path.join(dst, "voices", "!v"), exist_ok=True)
    for entry in os.listdir(src):
        if entry != "voices":
            os.symlink(os.path.join(src, entry), os.path.join(dst, entry))
    for entry in os.listdir(os.path.join(src, "voices")):
        if entry != "!v":
            os.symlink(os.path.join(src, "voices", entry), os.path.join(dst, "voices", entry))
    for entry in os.listdir(os.path.join(src, "voices", "!v")):
        os.symlink(os.path.join(src, "voices", "!v", entry), os.path.join(dst, "voices", "!v", entry))
    for name, text in variants.items():
        with open(os.path.join(dst, "voices", "!v", name), "w") as f:
            f.write(text)
    return root


_CHECK_TEXT = "A short test of the voice."


@functools.lru_cache(maxsize=None)
def _bare_voice_audio(path: str, base: str) -> bytes:
    """The WAV bytes of `base` without a variant reading _CHECK_TEXT: one synthesis per folder and
    base voice, however many of its variants are checked."""
    return _run([f"--path={path}", "-v", base, "--stdout", "--", _CHECK_TEXT]).stdout


def check_variant_loads(path: str, base: str, variant: str) -> None:
    """EspeakError unless eSpeak NG really uses `variant` from the data folder `path` on the
    voice `base` ("gmw/en"): the synthesis must differ from `base` alone (a variant it cannot
    load gives exactly that, with no error)."""
    with_variant = _run([f"--path={path}", "-v", f"{base}+{variant}", "--stdout", "--", _CHECK_TEXT]).stdout
    if with_variant == _bare_voice_audio(path, base):
        raise EspeakError(f"espeak-ng ignored the variant {variant!r} in {path} and spoke {base!r} unchanged "
                          f"(too many voices for its list? at most {MAX_PRIVATE_VARIANTS} per folder)")


def read_variant(name: str) -> str:
    with open(os.path.join(data_dir(), "voices", "!v", name), errors="replace") as f:
        return f.read()


def synthesize(text: str, voice: str, rate: int = 175, pitch: int = 50, word_gap: int = 0,
               path: str | None = None) -> tuple[np.ndarray, int]:
    """(float32 samples, sample rate) of `voice` ("en-gb+f3") reading `text`.

    rate: words per minute (-s); pitch: 0..99 adjustment (-p); word_gap: pause between
    words in 10 ms units (-g); path: a folder holding an espeak-ng-data to use instead of
    the installed one (see `private_data_dir`).
    """
    import soundfile as sf

    args = ["-v", voice, "-s", str(int(rate)), "-p", str(int(pitch)), "-g", str(int(word_gap)), "--stdout"]
    if path:
        args.insert(0, f"--path={path}")
    proc = _run([*args, "--", text])
    if not proc.stdout:
        raise EspeakError(f"espeak-ng produced no audio for voice {voice!r} and text {text!r}")
    wave, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    return wave, int(sr)
