"""Pure Flax Linen modules; each returns (output, intermediates) where layers matter."""
