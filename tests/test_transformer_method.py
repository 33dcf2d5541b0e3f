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
    # the untrained model is probed on the same utterances and folds: the paired difference
    # is the difference of the two cross-validated accuracies, with a finite standard error
    last = f"layer{config.model.layers}"
    assert np.isclose(ev[f"content_acc.{last}.delta_vs_untrained"],
                      ev[f"content_acc.{last}"] - ev[f"untrained.content_acc.{last}"])
    assert np.isfinite(ev[f"content_acc.{last}.delta_se"]) and np.isfinite(ev[f"content_acc.{last}.se"])
    assert ev["content_acc.input"] == ev["untrained.content_acc.input"]
    with open(tmp_path / "untrained_eval.json") as f:
        assert json.load(f)["heldout_masked_ce"] == ev["untrained.heldout_masked_ce"]

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


def test_group_folds_test_every_row_once_and_never_on_both_sides():
    from jaxdis.eval.probes import group_folds

    groups = np.repeat(np.array(["a", "b", "c", "d", "e"]), 4)
    for n_folds, expect in ((0, 5), (2, 2), (9, 5)):
        folds = group_folds(groups, n_folds, seed=3)
        assert len(folds) == expect
        tested = np.concatenate([test for _, test in folds])
        assert np.array_equal(np.sort(tested), np.arange(len(groups)))
        for train, test in folds:
            assert not set(groups[train]) & set(groups[test])
            assert len(train) + len(test) == len(groups)


def test_clustered_se_matches_the_spread_of_group_means():
    from jaxdis.eval.probes import clustered_se

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(6), 10)
    v = rng.normal(size=60) + np.repeat(rng.normal(size=6), 10)
    means = v.reshape(6, 10).mean(1)
    assert np.isclose(clustered_se(v, groups), means.std(ddof=1) / np.sqrt(6))
    assert clustered_se(np.ones(60), groups) == 0.0


def _sentences_by_speakers(rng, speakers=6, sentences=12, signal=2.0):
    """Each speaker says every sentence; X = sentence code * signal + speaker offset + noise."""
    codes = rng.normal(size=(sentences, 8))
    spk = np.repeat(np.arange(speakers), sentences)
    sent = np.tile(np.arange(sentences), speakers)
    X = signal * codes[sent] + rng.normal(size=(speakers, 8))[spk] * 0.5 + rng.normal(size=(len(sent), 8)) * 0.5
    return X, sent, spk


def test_paired_probe_accuracy_tells_signal_from_noise():
    from jaxdis.eval.probes import paired_probe_accuracy, probe_correct

    rng = np.random.default_rng(0)
    X, y, spk = _sentences_by_speakers(rng)
    noise = rng.normal(size=X.shape)
    res = paired_probe_accuracy(X, noise, y, spk)
    assert res["groups"] == 6 and res["acc"] > 0.8 and res["base_acc"] < 0.3
    assert np.isclose(res["delta"], res["acc"] - res["base_acc"])
    assert res["delta"] > 4 * res["delta_se"] > 0
    # the same representation on the same folds: no difference at all
    same = paired_probe_accuracy(X, X.copy(), y, spk)
    assert same["delta"] == 0.0 and same["delta_se"] == 0.0 and same["acc"] == res["acc"]
    # each row is predicted by a probe that never saw its speaker: a speaker-only feature is useless
    only_speaker = np.eye(6)[spk] + rng.normal(size=(len(y), 6)) * 0.01
    assert probe_correct(only_speaker, y, spk).mean() < 0.3
