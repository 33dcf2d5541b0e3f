"""The shared trainer: data parallelism, exact resume, multi-process, NaN guard, batching."""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, run_python, worker_result
from jaxdis.data.batching import ArraySource, CropSource, pad_sequences

WORKER = os.path.join("tests", "workers", "trainer_worker.py")


def test_four_device_mesh_matches_one_device():
    """(a) One step on a 4-device mesh == one device (1e-5), with and without accumulation."""
    out = worker_result(run_python([WORKER, "one_step", "4"],
                                   env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}))
    for accum in (1, 2):
        one, four = out[f"1x{accum}"], out[f"4x{accum}"]
        assert abs(one["loss"] - four["loss"]) < 1e-5
        np.testing.assert_allclose(four["params"], one["params"], rtol=1e-5, atol=1e-5)
    # Accumulating 2 micro-batches is a different computation (BatchNorm sees half batches).
    assert out["1x1"]["loss"] != out["1x2"]["loss"]


def _train_cmd(workdir, *extra):
    return [os.path.join(ROOT, "train.py"), "--config", "configs/example.py:tiny", "--workdir", str(workdir),
            "--config.train.steps=200", "--config.train.ckpt_every=20", "--config.train.log_every=20", *extra]


def test_kill_and_resume_is_bit_identical(tmp_path):
    """(b) SIGKILL mid-run, rerun the same command: final state equals an uninterrupted run's."""
    from jaxdis.train import checkpoint as ckpt
    from jaxdis.train.loop import params_equal

    full, killed = tmp_path / "full", tmp_path / "killed"
    assert run_python(_train_cmd(full)).returncode == 0

    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.Popen([sys.executable, *_train_cmd(killed)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (killed / "checkpoints" / "40").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before it could be killed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted_at = ckpt.latest_step(str(killed))
    assert interrupted_at is not None and interrupted_at < 200, "the kill came too late to test anything"

    assert run_python(_train_cmd(killed)).returncode == 0
    a, b = ckpt.restore_raw(str(full)), ckpt.restore_raw(str(killed))
    assert int(a["step"]) == int(b["step"]) == 200
    assert params_equal(a["params"], b["params"])
    assert params_equal(a["opt_state"], b["opt_state"])
    assert params_equal(a["model_state"], b["model_state"])

    # Resuming with a different config says what changed.
    more = run_python(_train_cmd(full, "--config.train.steps=220"))
    assert more.returncode == 0 and "changed config (train.steps: 200 → 220)" in more.stderr, more.stderr[-2000:]
    assert int(ckpt.restore_raw(str(full))["step"]) == 220


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_distributed_matches_one_process(tmp_path):
    """(c) Two processes (jax.distributed, CPU collectives) train to the same loss as one."""
    single = worker_result(run_python([WORKER, "distributed_train", str(tmp_path / "single")]))
    port = _free_port()
    procs = []
    for pid in range(2):
        env = {**os.environ, "PYTHONPATH": ROOT, "JAXDIS_COORDINATOR": f"127.0.0.1:{port}",
               "JAXDIS_NUM_PROCESSES": "2", "JAXDIS_PROCESS_ID": str(pid)}
        procs.append(subprocess.Popen([sys.executable, WORKER, "distributed_train", str(tmp_path / "multi")],
                                      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        results.append(worker_result(subprocess.CompletedProcess(p.args, p.returncode, out, err)))
    main = next(r for r in results if r["process"] == 0)
    assert main["devices"] == 2 and single["devices"] == 1
    assert abs(main["loss"] - single["loss"]) < 1e-5


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path):
    from jaxdis.train import checkpoint as ckpt

    proc = run_python([os.path.join(ROOT, "train.py"), "--config", "configs/example.py:tiny", "--workdir",
                       str(tmp_path), "--config.optim.lr=1e30", "--config.optim.warmup_steps=10", "--config.train.ckpt_every=1",
                       "--config.train.log_every=1", "--config.train.steps=12"])
    assert proc.returncode != 0
    assert "non-finite" in proc.stderr and "last good checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr
    # Warm-up: lr is 0 at step 0 (a good checkpoint at step 1), then 1e29: the guard stops it.
    assert ckpt.latest_step(str(tmp_path)) == 1
    state = ckpt.restore_raw(str(tmp_path))
    assert all(np.isfinite(np.asarray(x)).all() for x in __import__("jax").tree.leaves(state["params"]))


def test_array_source_is_deterministic_and_sharded():
    data = {"x": np.arange(100)[:, None].astype(np.float32), "y": np.arange(100)}
    src = ArraySource(data, global_batch_size=8, seed=3)
    b5 = src.batch(5)
    assert np.array_equal(b5["y"], ArraySource(data, 8, seed=3).batch(5)["y"])
    halves = [src.batch(5, s, 2)["y"] for s in range(2)]
    assert np.array_equal(np.concatenate(halves), b5["y"])
    epoch = np.concatenate([src.batch(s)["y"] for s in range(src.steps_per_epoch)])
    assert len(set(epoch.tolist())) == len(epoch)          # no repeats within an epoch
    assert not np.array_equal(src.batch(0)["y"], src.batch(src.steps_per_epoch)["y"])  # reshuffled


def test_crop_source_views_do_not_overlap_and_pad():
    feats = [np.arange(n, dtype=np.float32)[:, None].repeat(3, 1) for n in (50, 200, 7)]
    src = CropSource(feats, crop_frames=20, global_batch_size=4, seed=0, views=2,
                     labels={"speaker": np.array([0, 1, 2])})
    b = src.batch(0)
    assert b["x"].shape == (4, 2, 20, 3) and b["mask"].shape == (4, 2, 20)
    for row, i in enumerate(b["index"]):
        v0, v1 = (set(b["x"][row, v][b["mask"][row, v], 0].tolist()) for v in range(2))
        assert not v0 & v1, "two views of one utterance overlap"
        assert b["speaker"][row] == i
        if len(feats[i]) == 7:
            assert b["mask"][row].sum() == 6  # 3 frames per region, zero-padded
    shards = [src.batch(0, s, 2)["x"] for s in range(2)]
    assert np.array_equal(np.concatenate(shards), b["x"])


def test_pad_sequences_rounds_up():
    x, m = pad_sequences([np.ones((5, 2)), np.ones((9, 2))], multiple=8)
    assert x.shape == (2, 16, 2) and m.sum(1).tolist() == [5, 9]


def test_bad_batch_size_is_a_clear_error(tmp_path):
    from configs.example import get_config
    from jaxdis.train import train_and_evaluate

    c = get_config("tiny")
    c.train.grad_accum = 3
    with pytest.raises(ValueError, match="must divide"):
        train_and_evaluate(c, str(tmp_path))
