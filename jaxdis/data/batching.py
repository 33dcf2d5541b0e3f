"""Fixed-shape, deterministic batches.

Every source here is a pure function of (seed, step): the batch for step s is the same
whether the run is fresh or resumed, on one host or many. Each host asks only for its
own rows (``shard`` of ``num_shards``) and loads nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

Batch = dict[str, np.ndarray]


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, 0x6A78])


def _row_rng(seed: int, step: int, row: int) -> np.random.Generator:
    """Randomness for one row of the global batch: the same however the batch is sharded."""
    return np.random.default_rng([seed, step, row, 0x5EED])


def shard_rows(global_batch_size: int, shard: int, num_shards: int) -> slice:
    """The slice of a global batch that one host (or one data shard) owns."""
    if global_batch_size % num_shards:
        raise ValueError(f"global batch {global_batch_size} does not split over {num_shards} shards")
    per = global_batch_size // num_shards
    return slice(shard * per, (shard + 1) * per)


def epoch_indices(num_items: int, global_batch_size: int, seed: int, step: int) -> np.ndarray:
    """Item indices of the global batch at `step`: a fresh permutation each epoch, the
    last incomplete batch of an epoch dropped (fixed shapes)."""
    if num_items < global_batch_size:
        # Small data: sample with a permutation per step so every batch is still full.
        reps = -(-global_batch_size // num_items)
        order = np.concatenate([_epoch_rng(seed, step * reps + r).permutation(num_items) for r in range(reps)])
        return order[:global_batch_size]
    per_epoch = num_items // global_batch_size
    epoch, within = divmod(step, per_epoch)
    order = _epoch_rng(seed, epoch).permutation(num_items)
    return order[within * global_batch_size:(within + 1) * global_batch_size]


class ArraySource:
    """Rows of in-memory arrays (embeddings, labels), shuffled each epoch."""

    def __init__(self, arrays: Mapping[str, np.ndarray], global_batch_size: int, seed: int = 0):
        sizes = {k: len(v) for k, v in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"arrays have different numbers of rows: {sizes}")
        self.arrays = dict(arrays)
        self.num_items = next(iter(sizes.values()))
        if self.num_items == 0:
            raise ValueError("no rows to train on")
        self.global_batch_size = int(global_batch_size)
        self.seed = int(seed)

    @property
    def steps_per_epoch(self) -> int:
        return max(self.num_items // self.global_batch_size, 1)

    def batch(self, step: int, shard: int = 0, num_shards: int = 1) -> Batch:
        idx = epoch_indices(self.num_items, self.global_batch_size, self.seed, step)
        idx = idx[shard_rows(self.global_batch_size, shard, num_shards)]
        return {k: v[idx] for k, v in self.arrays.items()}


class CropSource:
    """Random fixed-length crops of variable-length feature sequences.

    features: one (T_i, F) array per utterance. Each batch row is one utterance (shuffled
    per epoch) and `views` crops of `crop_frames` from it; with views > 1 the crops do not
    overlap (the utterance is split into `views` equal regions, one crop drawn in each, in
    random order). Utterances shorter than needed are zero-padded, and ``mask`` marks the
    real frames. Returns x (B, crop, F) or (B, views, crop, F), mask of matching leading
    shape, ``index`` (B,) the utterance index, plus any per-utterance labels.
    """

    def __init__(self, features: list[np.ndarray], crop_frames: int, global_batch_size: int, seed: int = 0,
                 labels: Mapping[str, np.ndarray] | None = None, views: int = 1):
        if not features:
            raise ValueError("no utterances to crop from")
        dims = {f.shape[1] for f in features}
        if len(dims) != 1:
            raise ValueError(f"feature sequences have different widths: {sorted(dims)}")
        self.features = features
        self.lengths = np.array([len(f) for f in features])
        self.crop_frames = int(crop_frames)
        self.views = int(views)
        self.global_batch_size = int(global_batch_size)
        self.seed = int(seed)
        self.labels = {k: np.asarray(v) for k, v in (labels or {}).items()}
        for k, v in self.labels.items():
            if len(v) != len(features):
                raise ValueError(f"label {k!r} has {len(v)} rows for {len(features)} utterances")
        self.dim = dims.pop()

    @property
    def steps_per_epoch(self) -> int:
        return max(len(self.features) // self.global_batch_size, 1)

    def _crop(self, rng: np.random.Generator, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        crop, views = self.crop_frames, self.views
        out = np.zeros((views, crop, self.dim), np.float32)
        mask = np.zeros((views, crop), bool)
        region = len(feats) // views
        for v, r in enumerate(rng.permutation(views)):
            lo, hi = r * region, (r + 1) * region if views > 1 else len(feats)
            seg_len = hi - lo
            start = lo + (rng.integers(0, seg_len - crop + 1) if seg_len > crop else 0)
            piece = feats[start:start + min(crop, seg_len)]
            out[v, :len(piece)] = piece
            mask[v, :len(piece)] = True
        return out, mask

    def batch(self, step: int, shard: int = 0, num_shards: int = 1) -> Batch:
        idx = epoch_indices(len(self.features), self.global_batch_size, self.seed, step)
        rows = range(self.global_batch_size)[shard_rows(self.global_batch_size, shard, num_shards)]
        idx = idx[rows.start:rows.stop]
        crops = [self._crop(_row_rng(self.seed, step, r), self.features[i]) for r, i in zip(rows, idx)]
        x = np.stack([c[0] for c in crops])
        mask = np.stack([c[1] for c in crops])
        if self.views == 1:
            x, mask = x[:, 0], mask[:, 0]
        out = {"x": x, "mask": mask, "index": idx.astype(np.int32)}
        out.update({k: v[idx] for k, v in self.labels.items()})
        return out


def pad_sequences(seqs: list[np.ndarray], length: int | None = None, multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Stacks (T_i, ...) arrays into (B, T, ...) zero-padded to `length` (or the longest,
    rounded up to `multiple` so few shapes ever compile) and a (B, T) mask of real frames."""
    longest = max(len(s) for s in seqs)
    length = length or -(-longest // multiple) * multiple
    out = np.zeros((len(seqs), length) + seqs[0].shape[1:], seqs[0].dtype)
    mask = np.zeros((len(seqs), length), bool)
    for i, s in enumerate(seqs):
        n = min(len(s), length)
        out[i, :n] = s[:n]
        mask[i, :n] = True
    return out, mask
