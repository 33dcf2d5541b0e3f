"""Ridge moments summed over 4 forced host devices (XLA_FLAGS set by the test) vs one device.
Prints 'RESULT {json}'."""

import json

import jax
import numpy as np


def main() -> None:
    from jaxdis import ridge

    devices = jax.devices()
    mesh = jax.sharding.Mesh(np.array(devices), ("data",))
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(64, 12)) + 2).astype(np.float32)           # 16 rows per device
    Y = (X @ rng.normal(size=(12, 3)) + rng.normal(size=(64, 3))).astype(np.float32)
    single = ridge.moments(X, Y, block_rows=64, col_blocks=1)
    sharded = ridge.moments(X, Y, block_rows=5, col_blocks=3, mesh=mesh)   # blocks + tail per shard
    diffs = [float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(np.asarray(b)).max(), 1e-12))
             for a, b in zip(sharded, single)]
    m_single, m_mesh = ridge.fit(X, Y, 0.5), ridge.fit(X, Y, 0.5, mesh=mesh)
    print("RESULT " + json.dumps({
        "devices": len(devices),
        "moment_rel_diffs": diffs,
        "coef_rel_diff": float(np.abs(m_mesh.coef - m_single.coef).max() / np.abs(m_single.coef).max()),
    }))


if __name__ == "__main__":
    main()
