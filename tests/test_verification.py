"""EER / minDCF against sklearn's ROC, trials, and the verify CLI."""

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from jaxdis.eval.verification import all_pairs, eer, error_rates, min_dcf, verify


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_error_rates_and_eer_match_sklearn_roc(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(4000) < 0.3
    scores = np.round(rng.standard_normal(4000) + 1.2 * labels, 2)   # rounding makes ties
    fpr, tpr, thr = roc_curve(labels, scores, drop_intermediate=False)
    t, far, frr = error_rates(scores, labels)
    np.testing.assert_allclose(t, thr)
    np.testing.assert_allclose(far, fpr, atol=1e-12)
    np.testing.assert_allclose(frr, 1 - tpr, atol=1e-12)
    # The EER lies between FAR and FRR at the two operating points around the crossing.
    k = int(np.argmax(fpr >= 1 - tpr))
    e = eer(scores, labels)
    assert min(fpr[k - 1], 1 - tpr[k]) - 1e-12 <= e <= max(fpr[k], 1 - tpr[k - 1]) + 1e-12


def test_known_cases():
    assert eer(np.array([0.9, 0.8, 0.2, 0.1]), np.array([1, 1, 0, 0])) == 0.0       # separable
    assert eer(np.array([0.1, 0.2, 0.8, 0.9]), np.array([1, 1, 0, 0])) == 1.0       # inverted
    # one target and one non-target swapped out of four each → EER 0.25
    s = np.array([8, 7, 6, 4, 5, 3, 2, 1], float)
    l = np.array([1, 1, 1, 1, 0, 0, 0, 0])      # the target at 4 sits below the non-target at 5
    assert eer(s, l) == pytest.approx(0.25)
    assert min_dcf(np.array([0.9, 0.8, 0.2, 0.1]), np.array([1, 1, 0, 0])) == 0.0
    with pytest.raises(ValueError, match="target and non-target"):
        eer(np.array([0.1, 0.2]), np.array([1, 1]))


def test_min_dcf_is_the_brute_force_minimum():
    rng = np.random.default_rng(3)
    labels = rng.random(500) < 0.5
    scores = rng.standard_normal(500) + labels
    best = min(0.01 * np.mean(scores[labels] < t) + 0.99 * np.mean(scores[~labels] >= t)
               for t in np.concatenate([scores, [np.inf]]))
    assert min_dcf(scores, labels) == pytest.approx(best / 0.01)


def test_pairs_and_verify():
    spk = np.repeat(["a", "b", "c"], 4)
    i, j, same = all_pairs(spk)
    assert len(i) == 66 and same.sum() == 18
    x = np.eye(3)[np.repeat(np.arange(3), 4)] + 0.01 * np.random.default_rng(0).standard_normal((12, 3))
    out = verify(x, spk)
    assert out["eer"] == 0.0 and out["num_target_trials"] == 18
    i2, j2, same2 = all_pairs(np.repeat(np.arange(40), 5), max_trials=1000)
    assert len(i2) == 1000 and same2.sum() == 400  # all 400 target pairs kept


def test_verify_cli(tmp_path):
    import json

    import pandas as pd

    from jaxdis.eval.cli import main

    rng = np.random.default_rng(0)
    spk = np.repeat(np.arange(5), 6)
    x = rng.standard_normal((5, 16))[spk] + 0.3 * rng.standard_normal((30, 16))
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    pd.DataFrame({"speaker": spk}).to_csv(tmp_path / "l.csv", index=False)
    main(["verify", "--embeddings", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "l.csv"),
          "--out", str(tmp_path / "o")])
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["eer"] < 0.05 and 0 <= m["min_dcf"] <= 1 and m["num_trials"] == 435
    assert (tmp_path / "o" / "scores_embeddings.png").exists()


def test_verify_cli_heldout_of_a_run(tmp_path):
    """--heldout-of keeps only the voices a run held out (a baseline on the same trials)."""
    import json

    import pandas as pd

    from configs.ecapa import get_config
    from jaxdis.eval.cli import main
    from jaxdis.methods.common import heldout_corpus
    from jaxdis.train.checkpoint import save_config

    config = get_config("tiny")
    save_config(str(tmp_path / "run"), config)
    held = sorted(heldout_corpus(config).table["speaker"].unique())
    spk = np.repeat(held + ["not-a-voice-a", "not-a-voice-b"], 3)
    x = np.random.default_rng(0).standard_normal((len(spk), 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    pd.DataFrame({"speaker": spk}).to_csv(tmp_path / "l.csv", index=False)
    main(["verify", "--embeddings", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "l.csv"),
          "--heldout-of", str(tmp_path / "run"), "--out", str(tmp_path / "o")])
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    n = 3 * len(held)
    assert m["num_trials"] == n * (n - 1) // 2
