#!/usr/bin/env python
"""Train any jaxdis method.

    python train.py --config configs/autodecompose.py --workdir runs/autodecompose
    python train.py --config configs/sae.py:tiny --workdir /tmp/sae --config.train.steps=50

Rerunning the same command resumes from the workdir's latest checkpoint. On several
hosts, set JAXDIS_COORDINATOR=host:port, JAXDIS_NUM_PROCESSES and JAXDIS_PROCESS_ID
on each (or JAXDIS_DISTRIBUTED=auto on SLURM / Cloud TPU) and run the same command.
"""

import logging
import os

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "a configs/<method>.py file, optionally :variant (tiny, paper)")
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory: checkpoints, TensorBoard logs, config.json (default runs/<method>)")


def configure_logging() -> None:
    """jaxdis at INFO on stderr; libraries (orbax, absl) only at WARNING."""
    absl_logging.set_verbosity(absl_logging.WARNING)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    ours = logging.getLogger("jaxdis")
    ours.setLevel(logging.INFO)
    ours.addHandler(handler)
    ours.propagate = False


def main(argv):
    del argv
    from jaxdis.train.mesh import initialize_distributed

    initialize_distributed()  # before anything touches a device
    import jax

    from jaxdis.train import NonFiniteError, train_and_evaluate

    cache = os.environ.get("JAXDIS_COMPILATION_CACHE", os.path.expanduser("~/.cache/jaxdis/xla"))
    if cache != "off":
        jax.config.update("jax_compilation_cache_dir", cache)
    config = _CONFIG.value
    workdir = _WORKDIR.value or os.path.join("runs", config.method)
    configure_logging()
    logging.getLogger("jaxdis").info("method %s, %d device(s), workdir %s", config.method, jax.device_count(), workdir)
    try:
        train_and_evaluate(config, workdir)
    except NonFiniteError as err:
        logging.getLogger("jaxdis").error("%s", err)
        raise SystemExit(1) from None


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)
