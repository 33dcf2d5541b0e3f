"""Writing results: flat metrics.json (dotted keys, numbers only) and tables."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """{"a": {"b": 1}} -> {"a.b": 1.0}; keeps numbers only (bools become 0/1)."""
    flat: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, (bool, int, float)) or hasattr(value, "__float__"):
            flat[name] = float(value)
        else:
            raise TypeError(f"metric {name!r} is not a number: {value!r}")
    return flat


def write_metrics(out_dir: str, metrics: Mapping[str, Any]) -> str:
    """Writes out_dir/metrics.json atomically and returns its path. NaN/inf are kept as null."""
    os.makedirs(out_dir, exist_ok=True)
    flat = flatten(metrics)
    clean = {k: (v if math.isfinite(v) else None) for k, v in sorted(flat.items())}
    path = os.path.join(out_dir, "metrics.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(clean, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return path


def markdown_table(rows: list[Mapping[str, Any]], columns: list[str] | None = None, floatfmt: str = ".3f") -> str:
    """A GitHub-markdown table from a list of dicts."""
    if not rows:
        return ""
    columns = columns or list(rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "–" if math.isnan(v) else format(v, floatfmt)
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def print_benchmark(res: Mapping[str, Any], summary: str, out: str | None = None) -> None:
    """A benchmark's result: the full JSON, then its one-line summary; also to `out` if given."""
    print(json.dumps(res, indent=2))
    print(summary)
    if out:
        with open(out, "w") as f:
            json.dump(res, f, indent=2)
