"""Every YAML config loads strictly: unknown fields, bad YAML, missing files are one clear error."""

from __future__ import annotations

import re
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


# --- field types: checked once in config.build against the dataclass annotations ---------------

WRONG_TYPES = [
    ("data/paper.yaml", "context_size: sixty", r"context_size='sixty': expected int$"),
    ("data/paper.yaml", "context_size: true", r"context_size=True: expected int$"),
    ("data/paper.yaml", "hf: 'yes'", r"hf='yes': expected bool$"),
    ("data/paper.yaml", "split: [8, 1, x]", r"split=\[8, 1, 'x'\]: expected list of float$"),
    ("data/paper.yaml", "languages: [ja, en]",
     r"languages=\['ja', 'en'\]: expected mapping of str to str$"),
    ("features.yaml", "max_windows: many", r"max_windows='many': expected int or null$"),
    ("site.yaml", "feature_pages: 1", r"feature_pages=1: expected bool$"),
    ("compare.yaml", "related_threshold: high", r"related_threshold='high': expected float$"),
]


@pytest.mark.parametrize(("name", "line", "message"), WRONG_TYPES)
def test_wrong_type_names_field_and_expected_type(name, line, message, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIGS / name).read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    pattern = "^" + re.escape(str(bad)) + ": " + message
    with pytest.raises(UserError, match=pattern) as exc:
        LOADERS[name](bad)
    assert "\n" not in str(exc.value)


def test_nested_and_train_config_types():
    from llmjp_ckpt.saes.config import TrainConfig

    data = config.read_yaml(CONFIGS / "paper" / "sae.yaml")
    with pytest.raises(UserError,
                       match=r"^t\.yaml: model: steps=\[10, 'a'\]: "
                             r"expected list of int, str or null$"):
        TrainConfig.from_dict({**data, "model": {**data["model"], "steps": [10, "a"]}}, "t.yaml")
    with pytest.raises(UserError, match=r"^t\.yaml: saes: k=32: expected list of int$"):
        TrainConfig.from_dict({**data, "saes": {**data["saes"], "k": 32}}, "t.yaml")
    with pytest.raises(UserError, match=r"^hook_layer='12': expected an int \(1-based layer\) or a TransformerLens"):
        TrainConfig.from_dict({**data, "hook_layer": "12"}, "t.yaml")
    with pytest.raises(UserError, match=r"^t\.yaml: hook_layer=1\.5: expected int, str or list of int or str$"):
        TrainConfig.from_dict({**data, "hook_layer": 1.5}, "t.yaml")
    with pytest.raises(UserError, match=r"compare config: match: threshold='x': expected float$"):
        CompareConfig(match={"threshold": "x"})


def test_accepted_values_of_each_kind():
    cfg = config.build(DataConfig, {"tokenizer": "t", "corpus_root": None, "hf": True,
                                    "split": [0.8, 0.1, 0.1], "context_size": 33}, "d")
    assert cfg.split == [0.8, 0.1, 0.1] and cfg.context_size == 33
    assert config.build(FeaturesConfig, {"max_windows": None}, "f").max_windows is None
    assert config.build(CompareConfig, {"related_threshold": 1}, "c").related_threshold == 1


def test_packaged_config_found_from_any_folder(tmp_path, monkeypatch):
    from llmjp_ckpt.resources import CONFIG_DIR, config_path
    from llmjp_ckpt.saes.config import TrainConfig

    monkeypatch.chdir(tmp_path)
    assert CONFIGS.resolve() == CONFIG_DIR  # the repository's configs/ is the packaged folder
    for name in ("paper/sae.yaml", "configs/paper/sae.yaml"):
        assert config_path(name) == CONFIG_DIR / "paper" / "sae.yaml"
        assert TrainConfig.from_yaml(name).model.source == "llm-jp/llm-jp-3-1.8b"
    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / "sae.yaml").write_text("model: {source: mine}\n", encoding="utf-8")
    assert config_path("paper/sae.yaml") == Path("paper/sae.yaml")  # the user's file wins
    with pytest.raises(UserError, match=r"^nope/x\.yaml: config file not found$"):
        config.read_yaml("nope/x.yaml")
