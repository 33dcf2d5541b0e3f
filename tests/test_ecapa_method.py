"""ECAPA method end to end on the tiny built-in corpus: InfoNCE training and evaluation,
pseudo-labels from that run as teacher, eval.py verify from the workdir, AAM-softmax loss."""

import importlib.util
import json
import math

import jax
import jax.numpy as jnp
import numpy as np

from configs.ecapa import get_config
from jaxdis.methods.ecapa import EcapaMethod, length_buckets, mean_normalize


def test_infonce_then_pseudo_labels_then_verify(tmp_path):
    from jaxdis.eval.cli import main as eval_main
    from jaxdis.train import restore, train_and_evaluate

    teacher = str(tmp_path / "nce")
    train_and_evaluate(get_config("tiny"), teacher)
    ev = json.loads((tmp_path / "nce" / "eval.json").read_text())
    assert ev["step"] == 3 and 0.0 <= ev["eer"] <= 1.0 and 0.0 <= ev["min_dcf"] <= 1.0
    assert 0.0 <= ev["eer.fbank_stats"] <= 0.5
    logged = [json.loads(l) for l in (tmp_path / "nce" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["train/nce"]) for r in logged if "train/nce" in r)

    # Pseudo-labels: k-means on the teacher's embeddings; encoder starts from the teacher.
    c = get_config("tiny,pseudo")
    c.objective.teacher = teacher
    c.train.steps = 1
    c.eval.verify = False
    method = EcapaMethod(c)
    labels = method.pseudo_labels()
    kept, feats = method._train()
    assert labels.shape == (len(feats),) and labels.min() >= 0 and labels.max() < c.objective.num_clusters
    assert len(np.unique(labels)) > 1
    state = train_and_evaluate(c, str(tmp_path / "pseudo"))
    _, _, t_params, _ = restore(teacher)
    moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), state.params["encoder"],
                         t_params["encoder"])
    assert 0 < max(jax.tree.leaves(moved)) < 0.05                              # one small step from the teacher
    row = json.loads((tmp_path / "pseudo" / "metrics.jsonl").read_text().splitlines()[0])
    assert math.isfinite(row["train/ce"]) and math.isfinite(row["train/nce"])

    # eval.py verify from the workdir (held-out voices) → metrics.json; GE2E on the same trials
    ge2e = importlib.util.find_spec("resemblyzer") is not None
    eval_main(["verify", "--workdir", teacher, "--out", str(tmp_path / "v")] + (["--ge2e"] if ge2e else []))
    m = json.loads((tmp_path / "v" / "metrics.json").read_text())
    assert m["eer"] == ev["eer"] and m["min_dcf"] == ev["min_dcf"]
    assert (tmp_path / "v" / "scores_speaker.png").exists()
    if ge2e:
        assert m["ge2e.eer"] < 0.2 and (tmp_path / "v" / "scores_ge2e.png").exists()


def test_aam_objective_loss_and_gradient():
    method = EcapaMethod(get_config("tiny,aam"))
    batch = method.data().batch(0)
    assert batch["x"].ndim == 3 and batch["label"].max() < len(method.speakers())
    params, state = method.init(jax.random.PRNGKey(0), batch)
    assert params["aam"].shape == (len(method.speakers()), method.cfg.embed_dim)
    grad_fn = jax.jit(jax.value_and_grad(method.loss, has_aux=True))
    (loss, (metrics, new_state)), grads = grad_fn(params, state, batch, jax.random.PRNGKey(1))
    # random init: target cosines ≈ 0, so the loss is near log K plus the margin's penalty
    assert math.isfinite(float(loss)) and float(loss) > 0.5 * math.log(len(method.speakers()))
    assert float(jnp.abs(grads["aam"]).max()) > 0 and float(jnp.abs(grads["encoder"]["fc"]["kernel"]).max()) > 0
    assert not np.allclose(jax.tree.leaves(new_state)[0], jax.tree.leaves(state)[0])  # BN stats updated


def test_helpers():
    x = jnp.asarray(np.arange(24, dtype=np.float32).reshape(2, 4, 3))
    mask = jnp.asarray([[True, True, False, False], [True, True, True, True]])
    y = np.asarray(mean_normalize(x, mask))
    np.testing.assert_allclose(y[0, :2].sum(0), 0, atol=1e-6)
    assert not y[0, 2:].any()
    np.testing.assert_allclose(y[1].mean(0), 0, atol=1e-5)
    lengths = np.array([50, 130, 200, 1000, 129])
    got = length_buckets(lengths, frames_per_batch=400)
    covered = np.sort(np.concatenate([idx for _, idx in got]))
    np.testing.assert_array_equal(covered, np.arange(5))
    for plen, idx in got:
        assert (lengths[idx] <= plen).all() and len(idx) <= max(1, 400 // plen)
    assert sorted({p for p, _ in got}) == [128, 192, 256, 1024]
