"""data.normalize="l2": rows go to unit norm before the SAE; the choice travels with the
run, sae-probe / sae-steer apply it, and reconstructions come back at each row's norm."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import write_planted_gender


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    """conftest.write_planted_gender, each row scaled by a random factor in [0.3, 3]."""
    return write_planted_gender(tmp_path_factory.mktemp("sae_l2"), scale_rows=True)


@pytest.fixture(scope="module")
def workdir(scaled):
    from configs.sae import get_config
    from jaxdis.train import train_and_evaluate

    c = get_config("tiny")
    c.data.embeddings = str(scaled / "x.npy")
    c.data.normalize = "l2"
    c.data.standardize = True
    c.model.n_latents = 64
    c.model.saes = [(4, 0)]
    c.model.dead_window = 2000
    c.train.steps = 300
    c.train.log_every = 100
    c.train.ckpt_every = 300
    wd = str(scaled / "run")
    train_and_evaluate(c, wd)
    return wd


def test_default_is_raw_and_bad_value_is_refused():
    from configs.sae import get_config
    from jaxdis.methods.sae import SAEMethod

    c = get_config("tiny")
    assert c.data.normalize == "none"
    c.data.normalize = "unit"
    with pytest.raises(ValueError, match="normalize"):
        SAEMethod(c)


def test_l2_travels_with_the_run_and_matches_training(workdir, scaled):
    from jaxdis.methods.sae import load_saes
    from jaxdis.train import restore

    (sae,) = load_saes(workdir)
    assert sae.normalize == "l2" and sae.mean is not None
    x = np.load(scaled / "x.npy")
    # Standardisation statistics are those of the unit-norm rows, not of the raw ones.
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(sae.mean, xn.mean(0), atol=1e-5)
    # The host transform is the one the training step applied.
    _, method, _, model_state = restore(workdir)
    np.testing.assert_allclose(np.asarray(method._standardize(jnp.asarray(x), model_state)), sae.prepare(x),
                               rtol=1e-5, atol=1e-5)
    # Latents depend on a row's direction only.
    c = np.random.default_rng(1).uniform(0.1, 10.0, (len(x), 1)).astype(np.float32)
    np.testing.assert_allclose(sae.latents(c * x), sae.latents(x), rtol=1e-4, atol=1e-4)
    # decode(z) reconstructs the unit-norm row; like=x puts it back at x's norm.
    z = sae.latents(x)
    unit = np.linalg.norm(sae.decode(z), axis=1)
    assert abs(np.median(unit) - 1.0) < 0.1
    np.testing.assert_allclose(sae.decode(z, like=x), sae.decode(z) * np.linalg.norm(x, axis=1, keepdims=True),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sae.reconstruct(x), sae.decode(z, like=x), rtol=1e-5, atol=1e-5)


def test_probe_and_steer_work_in_the_raw_space(workdir, scaled):
    from jaxdis.eval.cli import main

    out = str(scaled / "probe")
    main(["sae-probe", "--workdir", workdir, "--labels", str(scaled / "labels.csv"), "--cols", "gender",
          "--out", out, "--no-plots", "--save-reconstruction", str(scaled / "recon.npy")])
    with open(os.path.join(out, "metrics.json")) as f:
        saved = json.load(f)
    x, x_hat = np.load(scaled / "x.npy"), np.load(scaled / "recon.npy")
    # FVU is raw-space, of the reconstruction at each row's norm (the saved file).
    np.testing.assert_allclose(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum(), saved["fvu"], rtol=1e-4)
    assert saved["fvu"] < 0.5
    ratio = np.linalg.norm(x_hat, axis=1) / np.linalg.norm(x, axis=1)
    assert np.all(np.abs(ratio - 1) < 0.5) and abs(np.median(ratio) - 1) < 0.1
    # Cosine scoring is scale-free: reconstructions verify about as well as the originals.
    assert saved["verify.reconstructed.eer"] < saved["verify.original.eer"] + 0.05
    assert saved["top_latent.gender.balanced_acc"] >= 0.9

    # An edit of latent j moves a raw row by Δz · ||x|| · (its decoder direction, unstandardised).
    from jaxdis.eval import latents as lat
    from jaxdis.methods.sae import load_saes

    (sae,) = load_saes(workdir)
    j = int(saved["top_latent.gender.index"])
    z = sae.latents(x)
    moved = lat.steer(sae, x, j, value=z[:, j] + 2.0)
    expect = x + 2.0 * np.linalg.norm(x, axis=1, keepdims=True) * sae.raw_direction(j)
    np.testing.assert_allclose(moved, expect, rtol=1e-4, atol=1e-4)

    m = main(["sae-steer", "--workdir", workdir, "--labels", str(scaled / "labels.csv"), "--col", "gender",
              "--out", str(scaled / "steer"), "--no-plots"])
    # The classifier is fit on the raw rows, whose random scales it partly reads, so
    # removing the latent flips fewer female rows than adding it flips male ones.
    assert m["steer"]["female"]["flip_rate"] >= 0.8 and m["steer"]["flip_rate"] > 0.5
    assert m["steer"]["sim_shift"] > 0
