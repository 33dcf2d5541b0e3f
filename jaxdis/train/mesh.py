"""Devices, the data-parallel mesh, and moving host batches onto it.

The mesh has one axis, ``data``. Parameters are replicated; batches are split along
their leading axis. On several hosts each process passes only its own rows and
``jax.make_array_from_process_local_data`` assembles the global array.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"

# Environment variables read by `initialize_distributed` (see README, "Several hosts").
ENV_COORDINATOR = "JAXDIS_COORDINATOR"      # host:port of process 0
ENV_NUM_PROCESSES = "JAXDIS_NUM_PROCESSES"
ENV_PROCESS_ID = "JAXDIS_PROCESS_ID"


def initialize_distributed() -> bool:
    """Calls ``jax.distributed.initialize`` when launched on several hosts.

    Explicit: JAXDIS_COORDINATOR, JAXDIS_NUM_PROCESSES, JAXDIS_PROCESS_ID. Otherwise,
    on clusters JAX detects by itself (SLURM, Cloud TPU, Open MPI) set
    JAXDIS_DISTRIBUTED=auto. Returns True when several processes take part.
    """
    if os.environ.get(ENV_COORDINATOR):
        jax.distributed.initialize(
            coordinator_address=os.environ[ENV_COORDINATOR],
            num_processes=int(os.environ[ENV_NUM_PROCESSES]),
            process_id=int(os.environ[ENV_PROCESS_ID]),
        )
    elif os.environ.get("JAXDIS_DISTRIBUTED") == "auto":
        jax.distributed.initialize()
    return jax.process_count() > 1


def make_mesh(num_data: int = -1, devices: list | None = None) -> Mesh:
    """A 1-D data-parallel mesh over `num_data` devices (-1: all of them)."""
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices) if num_data in (-1, None) else int(num_data)
    if n > len(devices):
        raise ValueError(f"mesh asks for {n} devices but only {len(devices)} are visible")
    return Mesh(np.array(devices[:n]), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def local_shard_info(mesh: Mesh) -> tuple[int, int]:
    """(this process's index, number of processes) among those holding the mesh's devices."""
    procs = sorted({d.process_index for d in mesh.devices.flat})
    return procs.index(jax.process_index()), len(procs)


def put_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's rows → global arrays split along the data axis."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}
