"""The few-label speaker-ID protocol."""

import json

import numpy as np
import pandas as pd
import pytest

from jaxdis.eval.speaker_id import draw_labelled, metrics_for, speaker_id_f1


def _clusters(n_spk=6, per=30, dim=8, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_spk, dim)) * 3
    spk = np.repeat(np.arange(n_spk), per)
    x = centres[spk] + spread * rng.standard_normal((len(spk), dim))
    dur = rng.uniform(2.0, 4.0, len(spk))
    return x, spk.astype(str), dur


def test_labelled_draw_meets_budget_and_leaves_tests():
    _, spk, dur = _clusters()
    mask = draw_labelled(np.random.default_rng(0), spk, dur, 10.0)
    for s in np.unique(spk):
        sel = spk == s
        got = dur[sel & mask].sum()
        assert got >= 10.0 and got - dur[sel & mask].max() < 10.0   # the smallest prefix reaching 10 s
        assert (sel & ~mask).any()
    assert draw_labelled(np.random.default_rng(0), spk, dur, 1e6) is None


def test_separable_speakers_score_high_and_random_ones_near_chance():
    x, spk, dur = _clusters()
    res = speaker_id_f1(x, spk, dur, budgets=(10, 30), repeats=3)
    assert [r.seconds for r in res] == [10, 30]
    assert all(r.f1_mean > 0.95 for r in res)
    noise = np.random.default_rng(1).standard_normal(x.shape)
    chance = speaker_id_f1(noise, spk, dur, budgets=(10,), repeats=3)[0]
    assert chance.f1_mean < 0.45  # 6 speakers: chance ≈ 0.17
    keys = metrics_for("speaker", res)
    assert set(keys) == {"f1.speaker.10s", "f1_std.speaker.10s", "f1.speaker.30s", "f1_std.speaker.30s"}


def test_budgets_the_data_cannot_allow_are_skipped():
    x, spk, dur = _clusters(per=10)   # ~30 s per speaker
    res = speaker_id_f1(x, spk, dur, budgets=(10, 120), repeats=2)
    assert [r.seconds for r in res] == [10]


def test_mismatched_inputs_are_clear_errors():
    x, spk, dur = _clusters()
    with pytest.raises(ValueError, match="align"):
        speaker_id_f1(x[:-1], spk, dur)
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        speaker_id_f1(x, spk, dur)


def test_cli_on_precomputed_embeddings(tmp_path):
    from jaxdis.eval.cli import main

    x, spk, dur = _clusters()
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    pd.DataFrame({"speaker": spk, "duration": dur}).to_csv(tmp_path / "l.csv", index=False)
    out = tmp_path / "out"
    main(["speaker-id", "--embeddings", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "l.csv"),
          "--budgets", "10", "15", "--repeats", "2", "--out", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["f1.embeddings.10s"] > 0.95 and "f1_std.embeddings.15s" in metrics
    assert (out / "tsne_embeddings.png").stat().st_size > 1000 and (out / "f1.png").exists()
    assert "embeddings" in (out / "table.md").read_text()
