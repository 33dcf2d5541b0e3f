"""jaxdis: separating who speaks from what is said, in JAX/Flax."""

__version__ = "0.1.0"
