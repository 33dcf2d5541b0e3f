"""Autodecompose end to end on the tiny built-in corpus: train, resume-free eval from the
workdir (speaker-id CLI), the embedding API, and unlabelled fine-tuning via init_from."""

import json
import shutil

import numpy as np
import pytest

from configs.autodecompose import get_config

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from jaxdis.train import train_and_evaluate

    workdir = tmp_path_factory.mktemp("ad") / "run"
    train_and_evaluate(get_config("tiny"), str(workdir))
    return workdir


def test_training_logs_and_evaluates(trained):
    rows = [json.loads(l) for l in (trained / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert len(losses) == 2 and all(np.isfinite(losses))
    ev = json.loads((trained / "eval.json").read_text())
    assert {"f1.speaker.10s", "f1.content.10s", "f1.mel.10s"} <= set(ev)


def test_speaker_id_from_workdir(trained, tmp_path):
    from jaxdis.eval.cli import main

    out = tmp_path / "sid"
    metrics = main(["speaker-id", "--workdir", str(trained), "--budgets", "5", "--repeats", "2", "--out", str(out)])
    for enc in ("speaker", "content", "mel"):
        assert 0.0 <= metrics[f"f1.{enc}.5s"] <= 1.0 and f"f1_std.{enc}.5s" in metrics
    assert (out / "tsne_speaker.png").exists()


def test_embed_command_files_give_the_same_speaker_id(trained, tmp_path):
    """eval.py embed writes what --embeddings/--labels read back: same F1 as from the workdir."""
    import pandas as pd

    from jaxdis.eval.cli import main

    m = main(["embed", "--workdir", str(trained), "--out", str(tmp_path / "emb")])
    x = np.load(tmp_path / "emb" / "speaker.npy")
    labels = pd.read_csv(tmp_path / "emb" / "labels.csv")
    assert x.shape == (m["n"], m["dim.speaker"]) and len(labels) == len(x) and "path" not in labels
    direct = main(["speaker-id", "--workdir", str(trained), "--budgets", "5", "--repeats", "2", "--no-plots",
                   "--out", str(tmp_path / "a")])
    via_files = main(["speaker-id", "--embeddings", str(tmp_path / "emb" / "speaker.npy"), "--labels",
                      str(tmp_path / "emb" / "labels.csv"), "--budgets", "5", "--repeats", "2", "--no-plots",
                      "--out", str(tmp_path / "b")])
    assert via_files["f1.embeddings.5s"] == pytest.approx(direct["f1.speaker.5s"], abs=1e-6)


def test_encoder_api_embeds_files(trained):
    from jaxdis.data.corpus import load_corpus
    from jaxdis.inference import Encoder

    paths = load_corpus("builtin:tiny").table["path"].tolist()[:3]
    emb = Encoder(str(trained)).embed_files(paths)
    assert emb["speaker"].shape == (3, 8) and emb["content"].shape == (3, 8) and emb["mel"].shape == (3, 160)
    assert np.isfinite(emb["speaker"]).all() and not np.allclose(emb["speaker"][0], emb["speaker"][1])


def test_init_from_starts_from_the_checkpoint(trained, tmp_path):
    from jaxdis.train import checkpoint as ckpt
    from jaxdis.train import train_and_evaluate

    c = get_config("tiny")
    c.init_from = str(trained)
    c.train.steps = 1
    c.optim.lr = 0.0          # no update: the new run's parameters are exactly the loaded ones
    train_and_evaluate(c, str(tmp_path / "ft"))
    a, b = ckpt.restore_raw(str(trained)), ckpt.restore_raw(str(tmp_path / "ft"))
    assert int(b["step"]) == 1
    for x, y in zip(__import__("jax").tree.leaves(a["params"]), __import__("jax").tree.leaves(b["params"])):
        np.testing.assert_array_equal(x, y)
