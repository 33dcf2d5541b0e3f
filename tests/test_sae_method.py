"""End to end on a planted attribute: train.py's trainer fits two SAEs at once, then
sae-probe finds the planted latent and sae-steer flips a classifier with it."""

import json
import os

import numpy as np
import pytest

from conftest import write_planted_gender


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """conftest.write_planted_gender: a planted gender direction in sparse 16-d data."""
    return write_planted_gender(tmp_path_factory.mktemp("sae"))


@pytest.fixture(scope="module")
def workdir(planted):
    from configs.sae import get_config
    from jaxdis.train import train_and_evaluate

    c = get_config("tiny")
    c.data.embeddings = str(planted / "x.npy")
    c.data.standardize = True
    c.model.n_latents = 64
    c.model.saes = [(4, 0), (128, 4, 0)]
    c.model.dead_window = 2000
    c.train.steps = 300
    c.train.log_every = 100
    c.train.ckpt_every = 300
    wd = str(planted / "run")
    train_and_evaluate(c, wd)
    return wd


def test_training_logs_per_sae_metrics_and_reconstructs(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        logs = [json.loads(line) for line in f]
    train = [line for line in logs if "train/loss" in line]
    first, last = train[0], train[-1]
    for name in ("k4_s0", "L128_k4_s0"):
        for key in ("fvu", "l0", "dead_frac", "auxk"):
            assert f"train/{key}/{name}" in last
        assert last[f"train/fvu/{name}"] < 0.5 * first[f"train/fvu/{name}"]
        assert last[f"train/l0/{name}"] <= 4.0
    with open(os.path.join(workdir, "eval.json")) as f:
        ev = json.load(f)
    assert ev["fvu/k4_s0"] < 0.4 and ev["l0/k4_s0"] <= 4.0

    from jaxdis.methods.sae import load_saes

    saes = load_saes(workdir)
    assert [s.label for s in saes] == ["L64_k4_s0", "L128_k4_s0"]
    assert saes[0].mean is not None  # standardisation travels with the checkpoint
    np.testing.assert_allclose(np.linalg.norm(saes[1].decoder, axis=1), 1.0, atol=1e-5)


def test_probe_and_steer_commands(workdir, planted):
    from jaxdis.eval.cli import main

    out = str(planted / "probe")
    m = main(["sae-probe", "--workdir", workdir, "--labels", str(planted / "labels.csv"), "--cols", "gender", "half",
              "--out", out, "--no-verify", "--save-reconstruction", str(planted / "recon.npy")])
    with open(os.path.join(out, "metrics.json")) as f:
        saved = json.load(f)
    for key in ("fvu", "l0", "dead_frac", "top_latent.gender.balanced_acc", "top_latent.gender.index",
                "sae.L128_k4_s0.top_latent.gender.balanced_acc"):
        assert key in saved
    assert saved["fvu"] < 0.5 and saved["l0"] <= 4
    x, x_hat = np.load(planted / "x.npy"), np.load(planted / "recon.npy")
    assert x_hat.shape == x.shape
    np.testing.assert_allclose(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum(), saved["fvu"], rtol=1e-4)
    assert saved["top_latent.gender.balanced_acc"] >= 0.9  # the planted direction has its own latent
    assert saved["splits"] == 5 and "baseline.top_dim.gender.balanced_acc" in saved
    # logistic regression on all inputs sees the planted direction too; 'half' is arbitrary
    assert saved["baseline.logreg.gender.balanced_acc"] >= 0.9
    assert saved["baseline.logreg.half.balanced_acc"] < 0.7
    # 'half' splits the speakers arbitrarily: the best of 64 latents on the fit speakers
    # must not look separable on held-out ones.
    assert saved["top_latent.half.balanced_acc"] < 0.7
    assert os.path.exists(os.path.join(out, "top_latent_gender.png"))
    assert os.path.exists(os.path.join(out, "feature_splitting_gender.png"))

    out = str(planted / "steer")
    m = main(["sae-steer", "--workdir", workdir, "--labels", str(planted / "labels.csv"), "--col", "gender",
              "--out", out])
    assert m["steer"]["flip_rate"] >= 0.8
    assert m["steer"]["sim_shift"] > 0
    assert os.path.exists(os.path.join(out, "steer_female.png"))
