"""`python eval.py <command> ...`: one entry point, commands registered by module.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> dict`` of
metrics; the CLI writes them to ``--out DIR/metrics.json``. Modules are imported
lazily so one command's optional dependency never breaks another.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from jaxdis.eval.report import write_metrics

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "corpus": ("jaxdis.eval.commands.corpus", "summarise a corpus: utterances, speakers, hours, unreadable files"),
    "speaker-id": ("jaxdis.eval.commands.speaker_id", "few-label speaker identification (Autodecompose protocol)"),
    "verify": ("jaxdis.eval.commands.verify", "speaker verification: EER and minDCF"),
    "residualize": ("jaxdis.eval.commands.residualize", "ridge residualization of audio by text embeddings, cosine statistics"),
    "sae-probe": ("jaxdis.eval.commands.sae_probe", "rank SAE latents by how well each alone separates a label"),
    "sae-steer": ("jaxdis.eval.commands.sae_steer", "steer embeddings by editing one SAE latent"),
    "learn2diss-table": ("jaxdis.eval.commands.learn2diss_table", "speaker-ID and content probes of Learn2Diss runs (Table 5)"),
    "embed": ("jaxdis.eval.commands.embed", "write embeddings of a corpus from a trained workdir"),
}


def _load(name: str):
    module, _ = COMMANDS[name]
    return importlib.import_module(module)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eval.py", description="jaxdis evaluation commands; each writes --out DIR/metrics.json and PNG plots.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:  # only import the module we need
            _load(name).add_arguments(p)
            if not any(a.dest == "out" for a in p._actions):
                p.add_argument("--out", required=True, help="output directory for metrics.json and plots")
    return parser


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), None)
    args = build_parser(command).parse_args(argv)
    metrics = _load(args.command).run(args)
    path = write_metrics(args.out, metrics)
    print(f"wrote {path}")
    return metrics
