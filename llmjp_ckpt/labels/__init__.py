"""Per-feature labels: language (paper and script rules), granularity, agreement, manual labelling.

The example format shared by all label and feature code (the study's published format): a
feature's examples are a list of windows; a window is a list of ``[token_text, activation]``
pairs, ``token_text`` being the SentencePiece piece with ``▁`` shown as a space and byte pieces
kept as ``<0xNN>``. Activations are floats or the study's quantised 0–10 ints.
"""

from llmjp_ckpt.labels.examples import FeatureRecord, Window, load_records, validate_examples

GRANULARITIES = ("token", "synonym", "semantic", "uninterpretable")
LANGUAGES = ("en", "ja", "mix")

__all__ = [
    "GRANULARITIES",
    "LANGUAGES",
    "FeatureRecord",
    "Window",
    "load_records",
    "validate_examples",
]
