"""Corpora: CSV/JSONL manifests, LibriSpeech layout, clear errors, counted skipping, splits,
and `eval.py corpus`."""

import json
import logging
import os

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from jaxdis.data.audio import AudioError
from jaxdis.data.corpus import Corpus, load_corpus, load_waveforms


def _tone(sr, seconds, channels=1):
    t = np.arange(int(round(sr * seconds))) / sr
    x = 0.3 * np.sin(2 * np.pi * 220.0 * t)
    return np.stack([x, 0.5 * x], 1) if channels == 2 else x


@pytest.fixture
def mixed(tmp_path):
    """22.05 kHz mono WAV (relative path) and 44.1 kHz stereo FLAC (absolute path), as CSV and JSONL."""
    (tmp_path / "a").mkdir()
    sf.write(tmp_path / "a" / "one.wav", _tone(22050, 0.5), 22050)
    sf.write(tmp_path / "two.flac", _tone(44100, 0.75, channels=2), 44100)
    rows = [{"path": "a/one.wav", "speaker": "s1", "text": "hello there", "gender": "f", "age": 31},
            {"path": str(tmp_path / "two.flac"), "speaker": "s2", "gender": "m", "age": None}]
    pd.DataFrame(rows, dtype=object).to_csv(tmp_path / "m.csv", index=False)
    with open(tmp_path / "m.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return tmp_path


@pytest.mark.parametrize("name", ["m.csv", "m.jsonl"])
def test_mixed_manifest_loads_16k_mono_with_string_attributes(mixed, name):
    corpus = load_corpus(str(mixed / name))
    t = corpus.table
    assert list(t.columns[:4]) == ["utt_id", "path", "speaker", "text"] and corpus.attributes == ["gender", "age"]
    assert t["age"].tolist() == ["31", ""] and t["text"].tolist() == ["hello there", ""]
    assert all(isinstance(v, str) for v in t.to_numpy().ravel())
    assert t["path"].tolist() == [str(mixed / "a" / "one.wav"), str(mixed / "two.flac")]   # both absolute
    assert t["utt_id"].tolist() == ["a/one", "two"]                                          # stable ids
    assert corpus.speakers == ["s1", "s2"] and len(corpus) == 2
    kept, waves = load_waveforms(corpus, 16000)
    assert len(kept) == 2 and [w.dtype for w in waves] == [np.float32, np.float32]
    assert [w.ndim for w in waves] == [1, 1] and [len(w) for w in waves] == [8000, 12000]
    assert np.abs(waves[1]).max() == pytest.approx(0.225, abs=0.01)   # stereo averaged


def test_explicit_utt_id_and_folder_spec(mixed):
    pd.DataFrame({"utt_id": ["x1", "x2"], "path": ["a/one.wav", "two.flac"], "speaker": ["s1", "s1"]}).to_csv(
        mixed / "manifest.csv", index=False)
    corpus = load_corpus(str(mixed))             # a folder holding manifest.csv
    assert corpus.table["utt_id"].tolist() == ["x1", "x2"] and corpus.name == "manifest"


@pytest.mark.parametrize("rows, match", [
    ({"file": ["x.wav"]}, r"missing column\(s\) path, speaker"),
    ({"path": ["x.wav"], "who": ["a"]}, r"missing column\(s\) speaker"),
    ({"path": ["x.wav", "x.wav"], "speaker": ["a", "b"]}, "not unique"),
    ({"path": ["x.wav", "y.wav"], "speaker": ["a", ""]}, "empty 'speaker'.*row 2"),
])
def test_manifest_errors_are_clear(tmp_path, rows, match):
    pd.DataFrame(rows, dtype=object).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(ValueError, match=match) as err:
        load_corpus(str(tmp_path / "m.csv"))
    assert "m.csv" in str(err.value)


def test_missing_manifest_and_unknown_spec(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_corpus(str(tmp_path / "nope.csv"))
    with pytest.raises(ValueError, match="'no-such-thing' not found"):
        load_corpus("no-such-thing")
    (tmp_path / "bad.jsonl").write_text('{"path": "a.wav", "speaker": "x"}\nnot json\n')
    with pytest.raises(ValueError, match="line 2"):
        load_corpus(str(tmp_path / "bad.jsonl"))


@pytest.fixture
def with_bad(mixed):
    (mixed / "corrupt.flac").write_bytes(b"not audio at all")
    sf.write(mixed / "silent.wav", np.zeros(8000), 16000)
    pd.DataFrame({"path": ["a/one.wav", "corrupt.flac", "two.flac", "silent.wav", "gone.wav"],
                  "speaker": ["s1", "s2", "s2", "s3", "s3"]}).to_csv(mixed / "bad.csv", index=False)
    return load_corpus(str(mixed / "bad.csv"))


def test_bad_files_raise_by_name_or_skip_with_one_counted_warning(with_bad, caplog):
    with pytest.raises(AudioError, match=r"corrupt\.flac.*and 2 more bad file"):
        load_waveforms(with_bad)
    with caplog.at_level(logging.WARNING, logger="jaxdis.data"):
        kept, waves = load_waveforms(with_bad, skip_bad=True)
    assert kept.table["utt_id"].tolist() == ["a/one", "two"] and [len(w) for w in waves] == [8000, 12000]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1                                   # one summary line
    assert "skipped 3 of 5" in warnings[0]
    assert all(n in warnings[0] for n in ("corrupt.flac", "silent.wav", "gone.wav (file not found)"))


def test_librispeech_layout(tmp_path):
    for spk, chap, utts in [("19", "198", ["19-198-0000", "19-198-0001"]), ("26", "495", ["26-495-0000"])]:
        d = tmp_path / "dev" / spk / chap
        d.mkdir(parents=True)
        for u in utts:
            sf.write(d / f"{u}.flac", _tone(16000, 0.25), 16000)
        (d / f"{spk}-{chap}.trans.txt").write_text("".join(f"{u} SOME WORDS {u[-1]}\n" for u in utts))
    (tmp_path / "SPEAKERS.TXT").write_text("; ID | SEX | SUBSET | MINUTES | NAME\n19 | F | dev | 25 | A\n"
                                          "26 | M | dev | 25 | B\n")
    corpus = load_corpus(str(tmp_path / "dev"))
    t = corpus.table
    assert t["utt_id"].tolist() == ["19-198-0000", "19-198-0001", "26-495-0000"]
    assert t["text"].tolist() == ["SOME WORDS 0", "SOME WORDS 1", "SOME WORDS 0"]
    assert t["chapter"].tolist() == ["198", "198", "495"] and t["gender"].tolist() == ["female", "female", "male"]
    assert t["path"].iloc[2] == str(tmp_path / "dev" / "26" / "495" / "26-495-0000.flac")
    assert [len(w) for w in load_waveforms(corpus)[1]] == [4000] * 3


def _grid(n_spk=10, per=8):
    rows = [{"utt_id": f"s{s}_{u}", "path": f"/x/{s}/{u}.wav", "speaker": f"s{s}", "text": "",
             "sentence": f"t{u}"} for s in range(n_spk) for u in range(per)]
    return Corpus(pd.DataFrame(rows), "grid")


def test_speaker_split_is_deterministic_disjoint_and_order_free():
    c = _grid()
    train, held = c.split("speaker", 0.3, seed=1)
    assert len(held.speakers) == 3 and len(train.speakers) == 7 and set(train.speakers).isdisjoint(held.speakers)
    assert len(train) + len(held) == len(c)
    assert c.split("speaker", 0.3, seed=1)[1].speakers == held.speakers
    assert c.split("speaker", 0.3, seed=2)[1].speakers != held.speakers
    shuffled = c.subset(np.random.default_rng(0).permutation(len(c)))
    assert shuffled.split("speaker", 0.3, seed=1)[1].speakers == held.speakers


def test_utterance_split_holds_out_a_share_of_every_speaker():
    c = _grid()
    train, held = c.split("utterance", 0.25, seed=0)
    assert len(held) == 20 and held.table.groupby("speaker").size().eq(2).all()   # round(0.25 * 8) each
    assert train.speakers == held.speakers == c.speakers
    assert set(train.table["utt_id"]).isdisjoint(held.table["utt_id"])
    shuffled = c.subset(np.random.default_rng(3).permutation(len(c)))
    assert sorted(shuffled.split("utterance", 0.25, seed=0)[1].table["utt_id"]) == sorted(held.table["utt_id"])
    assert sorted(c.split("utterance", 0.25, seed=1)[1].table["utt_id"]) != sorted(held.table["utt_id"])


def test_split_by_column_holds_out_whole_sentences():
    train, held = _grid().split("sentence", 0.25, seed=0)
    assert held.table["sentence"].nunique() == 2 and len(held) == 20
    assert set(train.table["sentence"]).isdisjoint(held.table["sentence"])
    with pytest.raises(ValueError, match="split by 'colour'"):
        _grid().split("colour")
    with pytest.raises(ValueError, match="heldout_frac"):
        _grid().split("speaker", 1.0)


def test_corpus_command_counts_names_and_plots(with_bad, mixed, capsys):
    from jaxdis.eval.cli import main

    out = mixed / "out"
    main(["corpus", "--manifest", str(mixed / "bad.csv"), "--out", str(out), "--skip-bad"])
    m = json.loads((out / "metrics.json").read_text())
    assert (m["num_utterances"], m["num_speakers"], m["num_unreadable"], m["num_usable"]) == (5, 3, 3, 2)
    assert m["hours"] == pytest.approx((0.5 + 0.75) / 3600, rel=1e-6)
    assert m["seconds.max"] == pytest.approx(0.75) and m["minutes_per_speaker.min"] == pytest.approx(0.5 / 60)
    printed = capsys.readouterr().out
    assert "3 of 5 files cannot be used" in printed and "corrupt.flac" in printed and "gone.wav" in printed
    assert pd.read_csv(out / "unreadable.csv")["utt_id"].tolist() == ["corrupt", "silent", "gone"]
    assert load_corpus(str(out / "usable.csv")).table["utt_id"].tolist() == ["a/one", "two"]
    assert os.path.getsize(out / "durations.png") > 1000
