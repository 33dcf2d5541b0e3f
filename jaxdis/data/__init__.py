"""Audio loading, corpora, features and batching."""
