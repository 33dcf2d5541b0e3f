"""Training methods: the only thing train.py dispatches on. Imported lazily by name."""

from __future__ import annotations

import importlib

from ml_collections import ConfigDict

from jaxdis.methods.base import BatchSource, Method

# config.method -> "module:Class"
REGISTRY: dict[str, str] = {
    "autodecompose": "jaxdis.methods.autodecompose:AutodecomposeMethod",
    "ecapa": "jaxdis.methods.ecapa:EcapaMethod",
    "transformer": "jaxdis.methods.transformer:TransformerMethod",
    "sae": "jaxdis.methods.sae:SAEMethod",
    "learn2diss": "jaxdis.methods.learn2diss:Learn2DissMethod",
    "example": "jaxdis.methods.example:ExampleMethod",
}


def get_method(config: ConfigDict) -> Method:
    """Instantiates the method named by ``config.method``."""
    if config.method not in REGISTRY:
        raise ValueError(f"unknown method {config.method!r}; known: {', '.join(sorted(REGISTRY))}")
    module, cls = REGISTRY[config.method].split(":")
    return getattr(importlib.import_module(module), cls)(config)


__all__ = ["BatchSource", "Method", "REGISTRY", "get_method"]
