"""Audio loading, corpora, splits, bad input, the built-in corpus and `eval.py corpus`."""

import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from jaxdis.data.audio import AudioError, load_audio
from jaxdis.data.corpus import load_corpus, load_waveforms


def _tone(sr, seconds=0.5, freq=220.0, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t)
    return np.stack([x, 0.5 * x], 1) if channels == 2 else x


@pytest.fixture(scope="module")
def mixed_corpus(tmp_path_factory):
    """A manifest mixing 22.05 kHz mono WAV and 44.1 kHz stereo FLAC, relative and absolute paths."""
    root = tmp_path_factory.mktemp("mixed")
    (root / "a").mkdir()
    sf.write(root / "a" / "one.wav", _tone(22050), 22050)
    sf.write(root / "two.flac", _tone(44100, channels=2), 44100)
    rows = [{"path": "a/one.wav", "speaker": "s1", "text": "hello", "gender": "f", "age": 31},
            {"path": str(root / "two.flac"), "speaker": "s2", "text": "", "gender": "m", "age": 40}]
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    with open(root / "manifest.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return root


@pytest.mark.parametrize("name", ["manifest.csv", "manifest.jsonl"])
def test_mixed_rates_and_channels_load_to_16k_mono(mixed_corpus, name):
    corpus = load_corpus(str(mixed_corpus / name))
    assert corpus.attributes == ["gender", "age"]
    assert corpus.table["age"].tolist() == ["31", "40"]          # attributes stay strings
    kept, waves = load_waveforms(corpus, 16000)
    assert len(kept) == 2
    for w in waves:
        assert w.dtype == np.float32 and w.ndim == 1
        assert abs(len(w) - 8000) <= 2                         # 0.5 s at 16 kHz
    # stereo averaged: (x + 0.5 x) / 2 → peak 0.225
    assert np.abs(waves[1]).max() == pytest.approx(0.225, abs=0.01)


def test_bad_files_raise_naming_the_file(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    sf.write(tmp_path / "silent.wav", np.zeros(16000), 16000)
    for name, reason in [("empty.wav", "empty"), ("corrupt.wav", "corrupt"), ("silent.wav", "silent"),
                         ("missing.wav", "not found")]:
        with pytest.raises(AudioError, match=reason) as err:
            load_audio(str(tmp_path / name))
        assert name in str(err.value)


def test_skip_bad_gives_a_counted_warning(mixed_corpus, tmp_path, caplog):
    shutil.copy(mixed_corpus / "a" / "one.wav", tmp_path / "good.wav")
    (tmp_path / "corrupt.flac").write_bytes(b"not audio at all")
    pd.DataFrame({"path": ["good.wav", "corrupt.flac"], "speaker": ["a", "b"]}).to_csv(tmp_path / "m.csv", index=False)
    corpus = load_corpus(str(tmp_path / "m.csv"))
    with pytest.raises(AudioError, match="corrupt.flac"):
        load_waveforms(corpus)
    with caplog.at_level(logging.WARNING, logger="jaxdis.data"):
        kept, waves = load_waveforms(corpus, skip_bad=True)
    assert len(kept) == len(waves) == 1 and kept.table["speaker"].tolist() == ["a"]
    assert "skipped 1 of 2" in caplog.text and "corrupt.flac" in caplog.text


def test_manifest_errors_are_clear(tmp_path):
    pd.DataFrame({"file": ["x.wav"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(ValueError, match="missing column.*path.*speaker"):
        load_corpus(str(tmp_path / "m.csv"))
    with pytest.raises(ValueError, match="corpus"):
        load_corpus("no-such-thing")


def test_librispeech_layout(tmp_path, mixed_corpus):
    for spk, chap, utts in [("19", "198", ["19-198-0000", "19-198-0001"]), ("26", "495", ["26-495-0000"])]:
        d = tmp_path / spk / chap
        d.mkdir(parents=True)
        lines = []
        for u in utts:
            sf.write(d / f"{u}.flac", _tone(16000), 16000)
            lines.append(f"{u} SOME WORDS HERE")
        (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    corpus = load_corpus(str(tmp_path))
    assert len(corpus) == 3 and corpus.speakers == ["19", "26"]
    assert corpus.table["text"].iloc[0] == "SOME WORDS HERE" and corpus.table["chapter"].iloc[2] == "495"
    assert len(load_waveforms(corpus)[1]) == 3


def _corpus(n_spk=10, per=6):
    from jaxdis.data.corpus import Corpus

    rows = [{"utt_id": f"s{s}_{u}", "path": f"/x/{s}/{u}.wav", "speaker": f"s{s}", "text": ""}
            for s in range(n_spk) for u in range(per)]
    return Corpus(pd.DataFrame(rows))


def test_splits_are_deterministic_and_disjoint():
    c = _corpus()
    tr, he = c.split("speaker", 0.3, seed=1)
    assert set(tr.speakers).isdisjoint(he.speakers) and len(he.speakers) == 3
    assert c.split("speaker", 0.3, seed=1)[1].speakers == he.speakers
    assert c.split("speaker", 0.3, seed=2)[1].speakers != he.speakers
    shuffled = c.subset(np.random.default_rng(0).permutation(len(c)))
    tr_u, he_u = c.split("utterance", 0.25, seed=0)
    assert sorted(shuffled.split("utterance", 0.25, seed=0)[1].table["utt_id"]) == sorted(he_u.table["utt_id"])
    assert len(he_u) == 15 and set(tr_u.table["utt_id"]).isdisjoint(he_u.table["utt_id"])


@pytest.fixture(scope="session")
def tiny_builtin():
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return load_corpus("builtin:tiny")


def test_tiny_builtin_corpus_has_voices_and_labels(tiny_builtin):
    t = tiny_builtin.table
    assert len(tiny_builtin.speakers) == 8 and len(t) == 48
    assert set(t["gender"]) == {"female", "male"} and t["accent"].nunique() == 2
    assert t.groupby("sentence")["speaker"].nunique().eq(8).all()   # every voice reads every sentence
    kept, waves = load_waveforms(tiny_builtin.subset([0, 1]))
    assert all(len(w) > 16000 for w in waves)


def test_corpus_command_counts_unreadable(tmp_path, mixed_corpus):
    from jaxdis.eval.cli import main

    shutil.copy(mixed_corpus / "a" / "one.wav", tmp_path / "good.wav")
    (tmp_path / "bad.wav").write_bytes(b"")
    pd.DataFrame({"path": ["good.wav", "bad.wav"], "speaker": ["a", "b"]}).to_csv(tmp_path / "m.csv", index=False)
    main(["corpus", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "out")])
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["num_utterances"] == 2 and m["num_speakers"] == 2 and m["num_unreadable"] == 1
    assert m["hours"] == pytest.approx(0.5 / 3600, rel=0.01)
    assert (tmp_path / "out" / "durations.png").exists()
