"""Evaluation: retrieval metrics (:mod:`~fusnet.eval.metrics`), packed codes and Hamming
search (:mod:`~fusnet.eval.retrieval`), and encoding a dataset to codes
(:mod:`~fusnet.eval.encoding`). Nothing here knows about training or configurations."""
