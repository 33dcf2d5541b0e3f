"""Evaluation: speaker ID, verification, cosine statistics, probes, plots, and the eval CLI."""
