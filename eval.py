#!/usr/bin/env python
"""jaxdis evaluation. `python eval.py --help` lists the commands; each writes --out DIR/metrics.json."""

from jaxdis.eval.cli import main

if __name__ == "__main__":
    main()
