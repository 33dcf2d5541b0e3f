"""The transformer method end to end on the built-in tiny corpus: train, evaluate, embed."""

import importlib.util
import json
import os

import jax
import numpy as np
import pytest

from conftest import ROOT


def _config(arg=None):
    spec = importlib.util.spec_from_file_location("tx_config", os.path.join(ROOT, "configs", "transformer.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg)


def test_configs_build():
    from jaxdis.methods.transformer import encoder_config

    default, paper = encoder_config(_config().model), encoder_config(_config("paper").model)
    assert (default.frontend, default.layers, default.hidden, default.frozen_layers) == ("fbank", 4, 192, None)
    assert (paper.frontend, paper.layers, paper.hidden, paper.frozen_layers, paper.dtype) == \
        ("waveform", 12, 768, 0, "bfloat16")
    assert paper.conv_dim == (512,) * 7 and paper.pos_conv_kernel == 128


def test_tiny_train_evaluate_embed(tmp_path):
    from jaxdis.train import restore
    from jaxdis.train.loop import train_and_evaluate

    config = _config("tiny")
    state = train_and_evaluate(config, str(tmp_path))
    assert int(state.step) == config.train.steps
    ms = state.model_state["targets"]
    assert ms["centroids"].shape == (config.objective.num_clusters, 39)
    with open(tmp_path / "eval.json") as f:
        ev = json.load(f)
    for key in ("heldout_masked_ce", "heldout_masked_acc", "untrained.heldout_masked_ce"):
        assert np.isfinite(ev[key])
    # chance level for K clusters is log K; a few steps cannot be far from it
    assert 0.3 * np.log(8) < ev["heldout_masked_ce"] < 3 * np.log(8)
    assert any(k.startswith("content_acc.layer") for k in ev)
    assert os.path.exists(tmp_path / "untrained_eval.json")

    _, method, params, model_state = restore(str(tmp_path))
    from jaxdis.methods.common import heldout_corpus

    kept, emb = method.embed(params, model_state, heldout_corpus(config))
    assert set(emb) == {"layer2"} and emb["layer2"].shape == (len(kept.table), 32)
    assert np.isfinite(emb["layer2"]).all() and "duration" in kept.table.columns
    waves = [np.random.default_rng(0).standard_normal(8000).astype(np.float32)]
    assert method.embed_waves(params, model_state, waves)["layer2"].shape == (1, 32)


@pytest.mark.parametrize("norm", ["utterance", "none"])
def test_mfcc_targets_see_what_the_encoder_sees(norm):
    """fbank input is CMVN'd per utterance, so with mfcc_norm="utterance" the targets cannot
    depend on an utterance's gain (a constant added to its log-mel) either."""
    from jaxdis.methods.transformer import TransformerMethod

    config = _config("tiny")
    config.objective.mfcc_norm = norm
    method = TransformerMethod(config)
    x = np.random.default_rng(0).standard_normal((2, 40, 80)).astype(np.float32)
    mask = np.ones((2, 40), bool)
    a = np.asarray(method._target_features({}, x, mask))
    b = np.asarray(method._target_features({}, x + 3.0, mask))
    assert a.shape == (2, 20, 39)
    assert np.allclose(a, b, atol=1e-4) == (norm == "utterance")
