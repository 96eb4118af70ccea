"""The packaged registry, user entries from $LLMJP_CKPT_REGISTRY, and --trust-pickle in every stage
that loads a model (train, features, site; inspect is covered in test_adapter)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llmjp_ckpt import cli
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.models import adapter
from llmjp_ckpt.models.registry import load_registry
from llmjp_ckpt.resources import CONFIG_DIR, MODELS_DIR, REGISTRY_ENV
from tests.helpers import train_config
from tests.model_builders import build_checkpoints, build_tokenizer


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    adapter.registry.cache_clear()
    yield
    adapter.registry.cache_clear()


def test_registry_is_package_data(clean_registry):
    assert MODELS_DIR.is_relative_to(Path(adapter.__file__).resolve().parents[1])
    assert (CONFIG_DIR / "paper" / "sae.yaml").is_file()
    models = load_registry()
    assert {"llm-jp/llm-jp-3-1.8b", "llmjp-toy"} <= set(models)
    assert models["llm-jp/llm-jp-3-1.8b"].steps[-1] == 988240


def test_user_registry_adds_and_overrides(clean_registry, monkeypatch, tmp_path, capsys):
    folder = tmp_path / "reg"
    folder.mkdir()
    (folder / "a.yaml").write_text(
        "models:\n  - name: my-model\n    steps: [1, 2]\n    hub_repo: me/my-model\n"
        "    revision_pattern: 'step{step}'\n", encoding="utf-8")
    override = tmp_path / "override.yaml"
    override.write_text("models:\n  - name: llmjp-toy\n    steps: discover\n"
                        f"    local_root: {tmp_path / 'toyroot'}\n", encoding="utf-8")
    monkeypatch.setenv(REGISTRY_ENV, f"{folder}:{override}")
    models = load_registry()
    assert models["my-model"].hub_revision(2) == "step2"
    assert models["llmjp-toy"].local_root == str(tmp_path / "toyroot")
    assert "llm-jp/llm-jp-3-1.8b" in models  # the packaged entries stay
    assert cli.main(["checkpoints", "--model", "my-model"]) == 0
    assert "hub revision: step1" in capsys.readouterr().out
    assert "my-model" in adapter.registry()


def test_user_registry_errors_are_one_line(clean_registry, monkeypatch, tmp_path):
    monkeypatch.setenv(REGISTRY_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(UserError, match=r"missing\.yaml \(from \$LLMJP_CKPT_REGISTRY\): not found"):
        load_registry()
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - name: x\n    final_step: last\n", encoding="utf-8")
    monkeypatch.setenv(REGISTRY_ENV, str(bad))
    with pytest.raises(UserError,
                       match=r"bad\.yaml: models\[0\]: final_step='last': expected int or null"):
        load_registry()
    bad.write_text("models: {name: x}\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad\.yaml: expected a mapping with a 'models:' list"):
        load_registry()


# --- --trust-pickle reaches train, features and site -------------------------------------------

@pytest.fixture(scope="module")
def pickled_root(tmp_path_factory) -> Path:
    """A root holding iter_0000010/ with only pytorch_model.bin (pickle) weights."""
    from transformers import AutoModelForCausalLM

    base = tmp_path_factory.mktemp("pickled")
    src = build_checkpoints(base / "src", [10], build_tokenizer(base / "tok")) / "iter_0000010"
    dst = base / "root" / "iter_0000010"
    shutil.copytree(src, dst)
    AutoModelForCausalLM.from_pretrained(src).save_pretrained(dst, safe_serialization=False)
    (dst / "model.safetensors").unlink()
    return base / "root"


def test_train_model_spec_trust_pickle(pickled_root):
    from llmjp_ckpt.saes.config import ModelSpec, TrainConfig
    from llmjp_ckpt.saes.training import load_checkpoint_model

    cfg = TrainConfig.from_dict(train_config(pickled_root, [10]))
    with pytest.raises(UserError, match="refusing to unpickle"):
        load_checkpoint_model(cfg, 10)
    cfg = TrainConfig.from_dict(train_config(pickled_root, [10], model={"trust_pickle": True}))
    assert isinstance(cfg.model, ModelSpec) and cfg.model.trust_pickle
    assert load_checkpoint_model(cfg, 10).cfg.n_layers == 2


def test_features_and_site_loaders_trust_pickle(pickled_root, tmp_path):
    from llmjp_ckpt.features.analyze import FeaturesConfig, default_model_loader
    from llmjp_ckpt.runfolder import RunFolder
    from llmjp_ckpt.site.pages import features_model_loader

    sae_dir = tmp_path / "sae"
    sae_dir.mkdir()
    (sae_dir / "cfg.json").write_text("{}", encoding="utf-8")
    cfg = FeaturesConfig(model=str(pickled_root))
    with pytest.raises(UserError, match="refusing to unpickle"):
        default_model_loader(tmp_path, cfg, sae_dir)(10)
    trusted = FeaturesConfig(model=str(pickled_root), trust_pickle=True)
    assert default_model_loader(tmp_path, trusted, sae_dir)(10).cfg.n_layers == 2

    run = RunFolder(tmp_path / "run")
    with run.stage("features", {"model": str(pickled_root)}, outputs=[]) as st:
        assert not st.skipped
    saes = {10: {"none": sae_dir}}
    with pytest.raises(UserError, match="refusing to unpickle"):
        features_model_loader(run, saes, "cpu")(10)
    assert features_model_loader(run, saes, "cpu", trust_pickle=True)(10).cfg.n_layers == 2


@pytest.mark.parametrize("command", ["train", "features", "site", "inspect"])
def test_trust_pickle_flag_on_every_model_loading_command(command):
    first = {"train": ["--config", "x.yaml"], "features": ["--run", "r"], "site": ["--run", "r"],
             "inspect": ["some/folder"]}[command]
    args = cli.build_parser().parse_args([command, *first, "--trust-pickle"])
    assert args.trust_pickle is True
    assert cli.build_parser().parse_args([command, *first]).trust_pickle is False
