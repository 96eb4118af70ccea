"""Every YAML under configs/ loads into its stage's dataclass (the study's own configs included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmjp_ckpt.compare.stage import CompareConfig
from llmjp_ckpt.crosscoders.stage import load_config as load_crosscoder_config
from llmjp_ckpt.data.config import DataConfig
from llmjp_ckpt.features.analyze import FeaturesConfig
from llmjp_ckpt.launch.config import load_launch
from llmjp_ckpt.models.registry import load_registry
from llmjp_ckpt.saes.config import TrainConfig
from llmjp_ckpt.site.config import SiteConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL = sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*.yaml"))


def loader_for(rel: str):
    """The loader of one config file, by where it lives; None for a file no loader claims."""
    top = rel.split("/")[0]
    by_folder = {"data": DataConfig.from_yaml, "paper": TrainConfig.from_yaml,
                 "grid": TrainConfig.from_yaml, "demo": TrainConfig.from_yaml,
                 "models": lambda p: load_registry(Path(p).parent),
                 "crosscoder": load_crosscoder_config, "launch": load_launch}
    by_file = {"features.yaml": FeaturesConfig.from_yaml, "compare.yaml": CompareConfig.from_yaml,
               "site.yaml": SiteConfig.from_yaml}
    return by_folder.get(top) or by_file.get(rel)


def test_every_config_has_a_loader() -> None:
    assert ALL, f"no YAML found under {CONFIGS}"
    unclaimed = [rel for rel in ALL if loader_for(rel) is None]
    assert not unclaimed, f"configs without a loader in this test: {unclaimed}"


@pytest.mark.parametrize("rel", ALL)
def test_config_loads(rel: str) -> None:
    loaded = loader_for(rel)(CONFIGS / rel)
    assert loaded  # a dataclass, or a non-empty registry


def test_paper_config_is_the_study() -> None:
    cfg = TrainConfig.from_yaml(CONFIGS / "paper" / "sae.yaml")
    assert cfg.model.steps == [10, 100, 1000, 10000, 100000, 988240]
    assert cfg.hook_layer == 12
    (spec,) = cfg.specs()
    assert (spec.expansion, spec.k, spec.lr) == (16, 32, 1e-3)
    assert cfg.runner["train_batch_size_tokens"] == 32768
    grid = TrainConfig.from_yaml(CONFIGS / "grid" / "paper_grid.yaml")
    assert {s.expansion for s in grid.specs()} == {4, 8, 16, 32, 64}
    assert {s.k for s in grid.specs()} == {8, 16, 32, 64, 128}
    data = DataConfig.from_yaml(CONFIGS / "data" / "paper.yaml")
    assert data.context_size == 65 and list(data.split) == [8, 1, 1]
