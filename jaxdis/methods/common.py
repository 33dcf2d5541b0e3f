"""Helpers every corpus-based method shares: which utterances train, which are held out."""

from __future__ import annotations

from ml_collections import ConfigDict


def corpus_splits(config: ConfigDict):
    """(train, heldout) corpora from ``config.data``: the corpus spec, split by speaker
    (unseen voices held out) or by utterance, deterministic from ``data.split_seed``."""
    from jaxdis.data.corpus import load_corpus

    d = config.data
    corpus = load_corpus(d.corpus, cache_dir=config.get("cache_dir") or None)
    if not d.heldout_frac:
        return corpus, corpus.subset([])
    return corpus.split(by=d.split, heldout_frac=d.heldout_frac, seed=d.split_seed)


def heldout_corpus(config: ConfigDict):
    """The utterances (speakers, for a speaker split) the model never trained on."""
    return corpus_splits(config)[1]
