"""Cross-checkpoint comparison: feature matching, lineages and class transitions with figures.

``compare_run(run_dir)`` is the stage (``llmjp-ckpt compare --run RUN``); ``match_decoders``
matches two SAEs (``llmjp-ckpt match``).
"""

from llmjp_ckpt.compare.decoders import Decoder, load_decoder
from llmjp_ckpt.compare.matching import MatchConfig, MatchResult, match_decoders, write_matches_csv
from llmjp_ckpt.compare.stage import CompareConfig, compare_run

__all__ = [
    "CompareConfig", "Decoder", "MatchConfig", "MatchResult", "compare_run", "load_decoder",
    "match_decoders", "write_matches_csv",
]
