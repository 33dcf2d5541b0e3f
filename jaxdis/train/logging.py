"""Metrics out: TensorBoard scalars and a JSON-lines file, from process 0 only."""

from __future__ import annotations

import json
import math
import os
import time

import jax
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class MetricWriter:
    """Writes scalars to ``workdir/tb`` (TensorBoard) and ``workdir/metrics.jsonl``."""

    def __init__(self, workdir: str):
        self.enabled = jax.process_index() == 0
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)
            self._tb = EventFileWriter(os.path.join(workdir, "tb"))
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", buffering=1)  # line-buffered: a killed run keeps its rows

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        now = time.time()
        values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
        self._tb.add_event(event_pb2.Event(wall_time=now, step=int(step), summary=summary_pb2.Summary(value=values)))
        row = {"step": int(step), **{k: (float(v) if math.isfinite(float(v)) else None) for k, v in scalars.items()}}
        self._jsonl.write(json.dumps(row) + "\n")

    def flush(self) -> None:
        if self.enabled:
            self._tb.flush()
            self._jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()


def read_jsonl(workdir: str) -> list[dict]:
    """The logged rows, oldest first (what a resumed run appended included)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
