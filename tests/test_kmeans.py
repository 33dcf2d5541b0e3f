"""Minibatch k-means: recovers separated clusters, matches sklearn's inertia, deterministic."""

import jax
import numpy as np
import pytest
from sklearn.cluster import KMeans as SkKMeans
from sklearn.metrics import adjusted_rand_score

from jaxdis import kmeans


def _blobs(n_per=300, k=8, d=16, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)).astype(np.float32) * 3.0
    labels = np.repeat(np.arange(k), n_per)
    x = centres[labels] + spread * rng.standard_normal((len(labels), d)).astype(np.float32)
    return x, labels, centres


def test_kmeans_plus_plus_recovers_separated_clusters():
    x, labels, _ = _blobs()
    km, pred = kmeans.fit_predict(jax.random.PRNGKey(0), x, 8, steps=100, batch_size=512)
    assert adjusted_rand_score(labels, pred) == pytest.approx(1.0)
    assert km.centroids.shape == (8, 16) and float(km.counts.sum()) == pytest.approx(100 * 512)
    # every point within the blob noise of its centre: E‖noise‖² = d · spread² = 1.44
    assert 1.2 < km.inertia < 1.7


def test_random_init_is_worse_than_kmeans_plus_plus():
    """Random init can put two centres in one blob (a local minimum k-means cannot leave);
    D² sampling avoids it. Both still find most of the structure."""
    x, labels, _ = _blobs()
    rand, pred = kmeans.fit_predict(jax.random.PRNGKey(0), x, 8, steps=100, batch_size=512, init="random")
    pp = kmeans.fit(jax.random.PRNGKey(0), x, 8, steps=100, batch_size=512)
    assert adjusted_rand_score(labels, pred) > 0.7
    assert rand.inertia >= pp.inertia


def test_inertia_close_to_sklearn_on_overlapping_data():
    """On data without clean clusters, minibatch k-means lands within 5 % of sklearn's
    full-batch Lloyd with 10 restarts."""
    x = np.random.default_rng(1).standard_normal((4000, 8)).astype(np.float32)
    sk = SkKMeans(32, n_init=10, random_state=0).fit(x)
    ours = kmeans.fit(jax.random.PRNGKey(1), x, 32, steps=300, batch_size=1024)
    sk_inertia = sk.inertia_ / len(x)
    assert ours.inertia == pytest.approx(float(kmeans.inertia(ours.centroids, x)))
    assert ours.inertia < 1.05 * sk_inertia, (ours.inertia, sk_inertia)


def test_deterministic_and_predict_chunks():
    x, _, _ = _blobs(n_per=100, k=4, d=4, seed=3)
    a = kmeans.fit(jax.random.PRNGKey(7), x, 4, steps=20, batch_size=64)
    b = kmeans.fit(jax.random.PRNGKey(7), x, 4, steps=20, batch_size=64)
    c = kmeans.fit(jax.random.PRNGKey(8), x, 4, steps=20, batch_size=64)
    np.testing.assert_array_equal(np.asarray(a.centroids), np.asarray(b.centroids))
    assert not np.array_equal(np.asarray(a.centroids), np.asarray(c.centroids))
    full = np.asarray(kmeans.predict(a.centroids, x))
    brute = np.argmin(((x[:, None] - np.asarray(a.centroids)[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(full, brute)
    np.testing.assert_array_equal(np.asarray(kmeans.predict(a.centroids, x, chunk=37)), full)  # ragged chunks


def test_dead_centres_are_revived():
    """Start with a centre far from all data: it wins nothing, and is moved onto the data."""
    x, _, _ = _blobs(n_per=200, k=4, d=4, seed=4)
    init = np.concatenate([x[[0, 200, 400, 600]], np.full((1, 4), 1e3, np.float32)])
    cents, counts = kmeans._fit_steps(jax.random.PRNGKey(0), x, init, 128, 60, 5)
    assert np.abs(np.asarray(cents)).max() < 50
    assert float(counts[4]) > 0
