"""Every YAML config loads strictly: unknown fields, bad YAML, missing files are one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmjp_ckpt import config
from llmjp_ckpt.compare import CompareConfig
from llmjp_ckpt.data.config import DataConfig
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.features.analyze import FeaturesConfig
from llmjp_ckpt.site import SiteConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
LOADERS = {
    "features.yaml": FeaturesConfig.from_yaml,
    "site.yaml": SiteConfig.from_yaml,
    "compare.yaml": CompareConfig.from_yaml,
    "data/demo.yaml": DataConfig.from_yaml,
    "data/paper.yaml": DataConfig.from_yaml,
}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_shipped_configs_load(name):
    assert LOADERS[name](CONFIGS / name) is not None


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_unknown_field_names_file_and_field(name, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIGS / name).read_text(encoding="utf-8") + "\nbatch_sizee: 3\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad\.yaml.*unknown field 'batch_sizee'"):
        LOADERS[name](bad)


def test_bad_yaml_missing_file_and_non_mapping(tmp_path):
    (tmp_path / "a.yaml").write_text("n_top: [1, 2\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(UserError, match="not valid YAML"):
        config.load(FeaturesConfig, tmp_path / "a.yaml")
    with pytest.raises(UserError, match="not found"):
        config.load(FeaturesConfig, tmp_path / "missing.yaml")
    with pytest.raises(UserError, match="mapping"):
        config.load(FeaturesConfig, tmp_path / "b.yaml")
