"""Feature analysis: true top-N examples per SAE latent, their statistics and labels, the norm study."""

from llmjp_ckpt.features.analyze import COLUMNS, FeaturesConfig, analyze_run
from llmjp_ckpt.features.store import FeatureStore
from llmjp_ckpt.features.topn import TopNConfig, collect_topn

__all__ = ["COLUMNS", "FeatureStore", "FeaturesConfig", "TopNConfig", "analyze_run", "collect_topn"]
