"""One module per `eval.py` command: add_arguments(parser) and run(args) -> metrics."""
