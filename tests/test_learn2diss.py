"""Learn2Diss end to end on the built-in tiny corpus: configs, the aggregation and view
shapes, one tiny training run evaluated by `eval.py learn2diss-table`, and the joint step
on a 4-device mesh against 1 device."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT, run_python, worker_result
from configs.learn2diss import get_config
from jaxdis.methods import get_method
from jaxdis.models.learn2diss import pool_frames

WORKER = os.path.join(ROOT, "tests", "workers", "learn2diss_worker.py")


def test_configs_build_with_table1_knobs():
    for arg in (None, "tiny", "paper"):
        c = get_config(arg)
        assert c.method == "learn2diss" and c.mi_weight == 1e-3
    paper = get_method(get_config("paper"))
    assert paper.frame_cfg.layers == 12 and paper.frame_cfg.frozen_layers == 0      # L2D-H12
    assert paper.utt_cfg.input_dim == 512 and paper.utt_cfg.embed_dim == 256        # h reads X' = conv features
    assert len(paper.utt_cfg.channels) + 1 == 6                                      # L = 6
    c = get_config("paper")
    c.model.update(frozen_layers=6, trainable_layers=6)                              # L2D-H6
    m = get_method(c)
    assert m.frame_cfg.layers == 12 and m.frame_cfg.frozen_layers == 6 and m.utt_cfg.input_dim == 768


def test_pool_frames_averages_real_frames_only():
    z = jnp.arange(12.0).reshape(1, 6, 2)
    mask = jnp.array([[True, True, True, False, False, False]])
    pooled, m = pool_frames(z, mask, 2)
    np.testing.assert_allclose(np.asarray(pooled[0]), [[1, 2], [4, 5], [0, 0]])
    assert m.tolist() == [[True, True, False]]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from jaxdis.train import train_and_evaluate

    workdir = str(tmp_path_factory.mktemp("l2d") / "run")
    config = get_config("tiny")
    config.mi_warmup_steps = 3                       # λ ramps over steps 1–3 of 4
    state = train_and_evaluate(config, workdir)
    return workdir, state


def test_tiny_run_logs_every_term_and_trains_the_groups(tiny_run):
    from jaxdis.train.checkpoint import restore_raw
    from jaxdis.train.logging import read_jsonl

    workdir, state = tiny_run
    rows = [r for r in read_jsonl(workdir) if "train/loss" in r]
    weights = [r["train/mi_weight"] for r in rows]
    assert 0 < weights[0] < 1e-3 and weights[-1] == pytest.approx(1e-3)             # the ramp, then λ
    for k in ("club", "q_loglik", "L_frame", "L_utt", "L_MI", "objective", "nce", "frame_ce", "pseudo_con",
              "lr/frame", "lr/utt", "lr/q"):
        assert np.isfinite(rows[-1][f"train/{k}"]), k
    p2 = restore_raw(workdir, step=2)["params"]
    moved = lambda k: float(sum(np.abs(np.asarray(a) - np.asarray(b)).sum()
                                for a, b in zip(jax.tree.leaves(p2[k]), jax.tree.leaves(state.params[k]))))
    assert all(moved(k) > 0 for k in ("frame", "utt", "agg", "q"))             # every group's optimizer steps


def test_table_command_writes_all_keys(tiny_run, tmp_path):
    from jaxdis.eval.cli import main

    workdir, _ = tiny_run
    out = str(tmp_path / "table")
    metrics = main(["learn2diss-table", "--workdirs", workdir, workdir, "--names", "mi_off", "mi_on",
                    "--test-frac", "0.5", "--out", out])
    for run in ("mi_off", "mi_on"):
        for enc in ("frame", "utt"):
            for probe in ("sid", "content"):
                assert 0 <= metrics[f"{run}.{enc}.{probe}"] <= 1
    assert metrics["mi_off.utt.sid"] == metrics["mi_on.utt.sid"]                     # same run, same numbers
    assert np.isfinite(metrics["mi_on.train.club"]) and metrics["mi_on.mi_weight"] == 1e-3
    with open(os.path.join(out, "metrics.json")) as f:
        assert set(json.load(f)) == set(metrics)
    assert "speaker ID acc" in open(os.path.join(out, "table.md")).read()


def test_joint_step_on_four_devices_matches_one():
    out = worker_result(run_python([WORKER, "4"], env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4",
                                                       "JAX_PLATFORMS": "cpu"}, timeout=600))
    one, four = out["1"], out["4"]
    for k in ("loss", "objective", "club", "q_loglik", "L_frame", "L_utt"):
        np.testing.assert_allclose(four[k], one[k], rtol=2e-4, atol=1e-4, err_msg=k)
    np.testing.assert_allclose(four["q_params"], one["q_params"], rtol=1e-4, atol=1e-6)
