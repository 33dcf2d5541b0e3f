"""The built-in eSpeak NG corpus: voice design, variant reshaping, deterministic atomic
generation, and the tiny corpus's labels and audio."""

import dataclasses
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from jaxdis.data import builtin, espeak
from jaxdis.data.corpus import load_corpus
from jaxdis.data.sentences import SENTENCES

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install espeak-ng)")

GENDERS = {**{f"f{i}": "female" for i in range(1, 6)}, **{f"m{i}": "male" for i in range(1, 8)},
           "whisperf": "female", "Demonic": "male"}


def test_sentences_are_varied_and_within_6_to_20_words():
    words = np.array([len(s.split()) for s in SENTENCES])
    assert len(SENTENCES) == 200 and len(set(SENTENCES)) == 200
    assert words.min() == 6 and words.max() == 20 and (words >= 15).sum() >= 30 and (words <= 8).sum() >= 30
    assert sum(s.endswith("?") for s in SENTENCES) >= 8


def test_voices_cross_accents_and_balanced_genders():
    recipe = builtin.Recipe(("en-us", "en-gb", "en-029"), per_gender=2, num_sentences=4)
    vs = builtin.voices(recipe, GENDERS)
    assert len(vs) == 12 and [v.index for v in vs] == list(range(12))
    assert sum(v.gender == "female" for v in vs) == 6
    assert all(v.variant.startswith("f" if v.gender == "female" else "m") for v in vs)   # gender from the file
    assert not {v.variant for v in vs} & builtin.EFFECT_VARIANTS
    assert len({v.speaker for v in vs}) == 12
    for accent in recipe.accents:                      # no accent repeats a variant
        names = [v.variant for v in vs if v.accent == accent]
        assert len(names) == len(set(names)) == 4
    assert builtin.voices(recipe, GENDERS) == vs       # deterministic from the seed
    assert builtin.voices(dataclasses.replace(recipe, seed=1), GENDERS) != vs
    lo, hi = recipe.f0_scale
    assert all(lo <= v.shape.f0_scale <= hi and recipe.rate[0] <= v.rate <= recipe.rate[1] for v in vs)
    only_us = builtin.voices(recipe, GENDERS, accents={"en-us": "gmw/en-US", "en-gb-x-rp": "gmw/en-GB-x-rp"})
    assert {v.accent for v in only_us} == {"en-us"}    # accents not installed are left out
    assert {v.base for v in only_us} == {"gmw/en-US"}  # synthesis names the voice file


@needs_espeak
@pytest.mark.parametrize("name", ["default", "voices"])
def test_shipped_recipes_give_distinct_balanced_voices(name):
    """Every shipped recipe fits the installed variant pools: one speaker label per voice
    (a variant repeated within an accent would merge two voices' labels)."""
    recipe = builtin.RECIPES[name]
    vs = builtin.voices(recipe, espeak.variant_genders())
    assert len(vs) == len(recipe.accents) * 2 * recipe.per_gender
    assert len({v.speaker for v in vs}) == len(vs)
    assert sum(v.gender == "female" for v in vs) == len(vs) // 2


def test_shaped_variant_scales_pitch_and_formants():
    text = "language variant\nname female1\ngender female 70\npitch 140 200\nformant 1 120 80 180\n"
    shape = espeak.VoiceShape(f0_scale=1.1, range_scale=0.5, formant_scale=0.95,
                              formant_jitter=(1.0, 1.02) + (1.0,) * 7)
    out = espeak.shaped_variant(text, shape, "jaxdis007").splitlines()
    assert "name jaxdis007" in out and "gender female 70" in out
    assert "pitch 154 187" in out                      # 140*1.1, 154 + 60*1.1*0.5
    assert "formant 1 116 80 180" in out               # 120 * 0.95 * 1.02
    assert "formant 0 95 100 100" in out and "formant 8 95 100 100" in out   # absent formants added, scaled
    male = espeak.shaped_variant("name m\ngender male\n", espeak.VoiceShape(f0_scale=0.9), "x").splitlines()
    assert "pitch 74 106" in male                      # eSpeak NG's default 82 118, scaled


def test_missing_espeak_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(espeak.shutil, "which", lambda name: None)
    with pytest.raises(espeak.EspeakError, match="apt-get install espeak-ng"):
        builtin.builtin_manifest("tiny", cache_dir=str(tmp_path))
    assert not os.path.exists(tmp_path / "builtin" / "tiny")


MICRO = builtin.Recipe(("en-us",), per_gender=1, num_sentences=2, seed=3)


@needs_espeak
def test_generation_is_deterministic_atomic_and_versioned(monkeypatch, tmp_path):
    monkeypatch.setitem(builtin.RECIPES, "micro", MICRO)
    root = tmp_path / "builtin"
    # A killed earlier run left a half-written temporary folder: it is cleaned, never used.
    (root / ".micro.tmp-dead" / "wav").mkdir(parents=True)
    manifest = builtin.builtin_manifest("micro", cache_dir=str(tmp_path), progress=False)
    assert manifest == str(root / "micro" / "manifest.csv")
    assert sorted(os.listdir(root)) == [".micro.lock", "micro"]
    table = pd.read_csv(manifest)
    assert len(table) == 4 and sorted(os.listdir(root / "micro" / "voices")) == sorted(
        f"{s}.voice" for s in table["speaker"].unique())
    mtime = os.path.getmtime(manifest)
    assert builtin.builtin_manifest("micro", cache_dir=str(tmp_path)) == manifest     # cached
    assert os.path.getmtime(manifest) == mtime

    # Same recipe, another folder, one voice per eSpeak data folder: byte-identical audio.
    monkeypatch.setattr(espeak, "MAX_PRIVATE_VARIANTS", 1)
    builtin.generate(MICRO, str(tmp_path / "again"), workers=1, progress=False)
    for rel in table["path"]:
        assert (root / "micro" / rel).read_bytes() == (tmp_path / "again" / rel).read_bytes()

    # A generation that dies half-way leaves the finished corpus alone and no temporary folder.
    monkeypatch.setitem(builtin.RECIPES, "micro", dataclasses.replace(MICRO, seed=4))

    def boom(voice, sid, *args):
        raise RuntimeError("killed")

    monkeypatch.setattr(builtin, "render_utterance", boom)
    with pytest.raises(RuntimeError, match="killed"):
        builtin.builtin_manifest("micro", cache_dir=str(tmp_path), progress=False)
    assert sorted(os.listdir(root)) == [".micro.lock", "micro"] and os.path.getmtime(manifest) == mtime
    monkeypatch.undo()

    # A changed recipe regenerates in place.
    monkeypatch.setitem(builtin.RECIPES, "micro", dataclasses.replace(MICRO, seed=4))
    builtin.builtin_manifest("micro", cache_dir=str(tmp_path), progress=False)
    assert pd.read_csv(manifest)["rate"].tolist() != table["rate"].tolist()
    assert sorted(os.listdir(root)) == [".micro.lock", "micro"]


@needs_espeak
def test_a_variant_espeak_cannot_load_is_an_error(tmp_path):
    """eSpeak NG can speak a voice without its variant and say nothing (en-gb+variant in 1.51,
    any voice past its voice-list size when named by language): the check makes it an error."""
    text = espeak.shaped_variant(espeak.read_variant("f1"), espeak.VoiceShape(f0_scale=1.1), "x")
    ok = espeak.private_data_dir(str(tmp_path / "ok"), {"jaxdis000": text})
    espeak.check_variant_loads(ok, "gmw/en-US", "jaxdis000")
    for base in espeak.english_voices().values():   # each by its file: en-gb+f4 would speak plain en-gb
        espeak.check_variant_loads(espeak.data_dir(), base, "f4")
    crowded = espeak.private_data_dir(str(tmp_path / "crowded"), {f"jaxdis{i:03d}": text for i in range(400)})
    with pytest.raises(espeak.EspeakError, match="N_VOICES_LIST|ignored the variant"):
        espeak.check_variant_loads(crowded, "gmw/en-US", "jaxdis399")


@pytest.fixture(scope="module")
def tiny():
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return load_corpus("builtin:tiny")


def test_tiny_corpus_labels(tiny):
    t = tiny.table
    assert tiny.name == "builtin-tiny" and len(tiny.speakers) == 6 and len(t) == 48
    assert t.groupby("gender")["speaker"].nunique().to_dict() == {"female": 3, "male": 3}
    assert sorted(t["accent"].unique()) == ["en-029", "en-gb-scotland", "en-us"]
    assert (t["speaker"] == t["accent"] + "+" + t["variant"]).all()
    assert t.groupby("sentence")["speaker"].nunique().eq(6).all() and t["sentence"].nunique() == 8
    assert (t["text"] == [SENTENCES[int(s[1:])] for s in t["sentence"]]).all()
    assert t["utt_id"].is_unique and all(os.path.isabs(p) for p in t["path"])
    snr = t["snr_db"].astype(float)
    assert snr.between(30, 40).all() and t["rate"].nunique() > 20 and t["noise"].nunique() == 2


def test_tiny_corpus_audio_matches_its_labels(tiny):
    t = tiny.table
    for i in (0, 17, 40):
        x, sr = sf.read(t["path"][i])
        assert sr == 16000 and x.ndim == 1
        assert len(x) / sr == pytest.approx(float(t["duration"][i]), abs=1e-3)
        # The padding before speech holds only the added noise: its level gives the SNR back.
        lead = x[: int(0.04 * sr)]
        active = x[np.abs(x) > 0.02 * np.abs(x).max()]
        snr = 20 * np.log10(np.sqrt(np.mean(active ** 2)) / np.sqrt(np.mean(lead ** 2)))
        assert snr == pytest.approx(float(t["snr_db"][i]), abs=3.0)
