"""wav2vec2 span masking: rate, span structure, padding, determinism."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdis.masking import span_mask


def _runs(row):
    """Lengths of the runs of True in a 1-D bool array."""
    edges = np.diff(np.concatenate([[0], row.astype(int), [0]]))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def test_rate_spans_and_padding():
    b, t = 256, 200
    lengths = np.random.default_rng(0).integers(40, t + 1, b)
    valid = np.arange(t)[None] < lengths[:, None]
    m = np.asarray(jax.jit(span_mask)(jax.random.PRNGKey(0), jnp.asarray(valid)))
    assert m.shape == (b, t) and m.dtype == bool
    assert not (m & ~valid).any()                         # never on padding
    assert all((_runs(r) >= 10).all() for r in m)         # spans of 10, merged when they overlap
    # Expected fraction with n = p·L starts drawn without replacement from L − 9 positions:
    # 1 − P(no start in the 10 positions before a frame) ≈ 1 − (1 − p·L/(L−9))^10, averaged.
    frac = m.sum() / valid.sum()
    p_eff = 0.08 * lengths / (lengths - 9)
    expected = np.sum(lengths * (1 - (1 - p_eff) ** 10)) / lengths.sum()
    assert abs(frac - expected) < 0.04, (frac, expected)
    assert 0.45 < frac < 0.62


def test_short_rows_and_determinism():
    valid = np.zeros((3, 50), bool)
    valid[0, :5] = True      # shorter than a span: nothing can be masked
    valid[1, :10] = True     # exactly one possible span
    valid[2, :] = True
    key = jax.random.PRNGKey(3)
    m = np.asarray(span_mask(key, jnp.asarray(valid)))
    assert not m[0].any()
    assert m[1, :10].all() and not m[1, 10:].any()
    assert m[2].sum() >= 10                                # min_spans = 2 ≥ one span of 10
    np.testing.assert_array_equal(m, np.asarray(span_mask(key, jnp.asarray(valid))))
    assert not np.array_equal(m, np.asarray(span_mask(jax.random.PRNGKey(4), jnp.asarray(valid))))


def test_start_count_matches_p_times_length():
    """Without overlap merging (span 1), the masked count is the number of starts: p·L on average."""
    valid = np.ones((512, 100), bool)
    m = np.asarray(span_mask(jax.random.PRNGKey(1), jnp.asarray(valid), mask_prob=0.08, span=1, min_spans=0))
    counts = m.sum(1)
    assert set(np.unique(counts)) <= {8, 9}               # floor(8 + u) → 8 (never 9 at p·L = 8.0 exactly)
    assert counts.mean() == 8.0
