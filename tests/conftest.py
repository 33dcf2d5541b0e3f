"""Shared test set-up: a persistent XLA compilation cache and helpers for subprocess runs."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.setdefault("JAXDIS_TEST_CACHE", os.path.join(ROOT, ".cache", "test"))
os.environ.setdefault("JAXDIS_CACHE", CACHE)                  # built-in corpus, features
os.environ.setdefault("JAXDIS_COMPILATION_CACHE", os.path.join(CACHE, "xla"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAXDIS_COMPILATION_CACHE"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def run_python(args: list[str], env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs `python args...` from the repo root with the test environment (plus `env`)."""
    full_env = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def worker_result(proc: subprocess.CompletedProcess) -> dict:
    """The JSON a tests/workers script printed after 'RESULT '."""
    if proc.returncode != 0:
        raise AssertionError(f"worker failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="session")
def repo_root() -> str:
    return ROOT


def write_planted_gender(root, *, scale_rows: bool = False):
    """The SAE tests' planted attribute: 384 rows of 16-d sparse data (24 speakers × 16), 'female'
    adding a fixed direction to a quarter of the speakers; scale_rows: each row then scaled by a
    random factor in [0.3, 3], so only a row's direction carries information. Writes x.npy and
    labels.csv (speaker, gender, half: an arbitrary split of the speakers) under `root`."""
    import numpy as np

    from jaxdis.methods.sae import synthetic_embeddings

    rng = np.random.default_rng(0)
    x = synthetic_embeddings(384, 16, 32, 1, seed=1)
    speaker = np.repeat(np.arange(24), 16)
    female = speaker % 4 == 0
    u = rng.standard_normal(16)
    x = x + 3.0 * np.outer(female, u / np.linalg.norm(u))
    if scale_rows:
        x = x * rng.uniform(0.3, 3.0, (len(x), 1))
    np.save(root / "x.npy", x.astype(np.float32))
    with open(root / "labels.csv", "w") as f:
        f.write("speaker,gender,half\n")
        for s, g in zip(speaker, female):
            f.write(f"spk{s},{'female' if g else 'male'},{'a' if s < 12 else 'b'}\n")
    return root
