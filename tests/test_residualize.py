"""`eval.py residualize` end to end on synthetic embeddings, and its input errors."""

import json

import numpy as np
import pandas as pd
import pytest

from jaxdis.embeddings import EmbeddingError, load_embeddings
from jaxdis.eval.cli import main


def synthetic(tmp_path, sentences=24, voices=4, seed=0):
    """audio = linear(text) + voice offset + noise: ridge on text should remove the sentence part."""
    rng = np.random.default_rng(seed)
    text_per_sentence = rng.normal(size=(sentences, 6))
    voice = rng.normal(size=(voices, 5))
    A = rng.normal(size=(6, 5)) * 2
    rows, X, Y = [], [], []
    for s in range(sentences):
        for v in range(voices):
            X.append(text_per_sentence[s])
            Y.append(text_per_sentence[s] @ A + voice[v] + 0.2 * rng.normal(size=5))
            rows.append({"speaker": f"v{v}", "sentence": f"s{s}"})
    paths = {k: str(tmp_path / f"{k}") for k in ("audio.npy", "text.npy", "labels.csv")}
    np.save(paths["audio.npy"], np.asarray(Y, np.float32))
    np.save(paths["text.npy"], np.asarray(X, np.float32))
    pd.DataFrame(rows).to_csv(paths["labels.csv"], index=False)
    return paths


def cli(paths, out, *extra):
    return main(["residualize", "--audio", paths["audio.npy"], "--text", paths["text.npy"], "--labels",
                 paths["labels.csv"], "--probe", "sentence", "--probe", "speaker", "--out", str(out), *extra])


def test_end_to_end_in_and_out_of_sample(tmp_path):
    paths = synthetic(tmp_path)
    m = cli(paths, tmp_path / "out", "--alpha", "0.1")
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for key in ("orig.same_mean", "orig.diff_mean", "resid.same_mean", "resid.diff_mean", "center.same_mean",
                "groupmean.same_mean", "orig.probe.sentence", "resid.probe.speaker", "alpha",
                "oos.resid.same_mean", "oos.groupmean.diff_mean", "oos.center.probe.sentence"):
        assert key in saved, key
    assert saved["alpha"] == 0.1 and m["n"] == 96
    assert m["orig.gap"] < 0.2 < 0.8 < m["resid.gap"]                 # voice separates once text is removed
    assert m["resid.probe.sentence"] <= 0.25 and m["orig.probe.sentence"] >= 0.75
    assert m["oos.resid.gap"] > 0.5                                   # text map generalises to new sentences
    resid = np.load(tmp_path / "out" / "resid.npy")
    assert resid.shape == (96, 5) and np.isfinite(resid).all()
    assert (tmp_path / "out" / "hist_in_sample.png").exists() and (tmp_path / "out" / "table.md").exists()


def test_cv_chooses_an_alpha_from_the_grid(tmp_path):
    paths = synthetic(tmp_path, seed=1)
    m = cli(paths, tmp_path / "cv", "--cv", "--alphas", "0.01", "1", "100", "--fit-frac", "0", "--no-plots")
    assert m["alpha"] in (0.01, 1.0, 100.0) and "oos.alpha" not in m


def test_bad_inputs_name_the_problem(tmp_path):
    paths = synthetic(tmp_path)
    np.save(tmp_path / "short.npy", np.zeros((95, 6), np.float32))
    with pytest.raises(EmbeddingError, match="96 rows but .* has 95"):
        cli({**paths, "text.npy": str(tmp_path / "short.npy")}, tmp_path / "x")
    pd.read_csv(paths["labels.csv"]).iloc[:90].to_csv(tmp_path / "l30.csv", index=False)
    with pytest.raises(EmbeddingError, match="90 rows but the embeddings have 96"):
        cli({**paths, "labels.csv": str(tmp_path / "l30.csv")}, tmp_path / "x")
    with pytest.raises(EmbeddingError, match="no column"):
        main(["residualize", "--audio", paths["audio.npy"], "--text", paths["text.npy"], "--labels",
              paths["labels.csv"], "--group", "voice", "--out", str(tmp_path / "x")])
    bad = np.load(paths["audio.npy"])
    bad[5, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(EmbeddingError, match="NaN"):
        load_embeddings(str(tmp_path / "nan.npy"))
    np.save(tmp_path / "3d.npy", np.zeros((2, 3, 4), np.float32))
    with pytest.raises(EmbeddingError, match="2-D"):
        load_embeddings(str(tmp_path / "3d.npy"))
    with pytest.raises(EmbeddingError, match="no such file"):
        load_embeddings(str(tmp_path / "missing.npy"))
