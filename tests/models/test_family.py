"""The LLM-jp-3 family in the registry: every released size, its shape checked at load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmjp_ckpt.errors import UserError
from llmjp_ckpt.models import adapter
from llmjp_ckpt.models.registry import load_registry
from llmjp_ckpt.saes.config import TrainConfig
from llmjp_ckpt.saes.plan import LLMJP_3_1_8B, model_shape, plan
from tests.model_builders import build_checkpoints, build_tokenizer

SIZES = ["150m", "440m", "980m", "1.8b", "3.7b", "7.2b", "13b", "172b"]


@pytest.fixture(autouse=True)
def _packaged_registry(monkeypatch):
    monkeypatch.delenv("LLMJP_CKPT_REGISTRY", raising=False)
    adapter.registry.cache_clear()
    yield
    adapter.registry.cache_clear()


def test_every_released_size_is_registered_with_its_shape():
    models = load_registry()
    for size in SIZES:
        e = models[f"llm-jp/llm-jp-3-{size}"]
        assert e.hub_repo == f"llm-jp/llm-jp-3-{size}"
        assert {"d_model", "n_layers", "n_heads", "d_vocab", "d_mlp"} <= set(e.shape or {})
        assert e.shape["d_model"] % e.shape["n_heads"] == 0 and e.shape["d_vocab"] == 99584
    sh = models["llm-jp/llm-jp-3-1.8b"].shape
    assert (sh["n_layers"], sh["d_model"], sh["n_heads"], sh["d_mlp"], sh["d_vocab"]) == (
        LLMJP_3_1_8B.n_layers, LLMJP_3_1_8B.d_model, LLMJP_3_1_8B.n_heads, LLMJP_3_1_8B.d_mlp,
        LLMJP_3_1_8B.d_vocab)
    # sizes grow with the name
    assert [models[f"llm-jp/llm-jp-3-{s}"].shape["n_layers"] for s in SIZES] == sorted(
        models[f"llm-jp/llm-jp-3-{s}"].shape["n_layers"] for s in SIZES)


def _config_only(root: Path, step: int, **cfg) -> Path:
    folder = root / f"iter_{step:07d}"
    folder.mkdir(parents=True)
    base = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
            "rope_scaling": None, "attention_bias": False, "mlp_bias": False}
    (folder / "config.json").write_text(json.dumps(base | cfg), encoding="utf-8")
    return root


def _hf(sh: dict) -> dict:
    return {"hidden_size": sh["d_model"], "num_hidden_layers": sh["n_layers"],
            "num_attention_heads": sh["n_heads"], "vocab_size": sh["d_vocab"],
            "intermediate_size": sh["d_mlp"], "num_key_value_heads": sh.get("n_kv_heads", sh["n_heads"])}


@pytest.mark.parametrize("size", ["150m", "13b", "172b"])
def test_matching_config_passes_and_each_field_is_checked(tmp_path, size):
    name = f"llm-jp/llm-jp-3-{size}"
    sh = load_registry()[name].shape
    good = _config_only(tmp_path / "good", 5, **_hf(sh))
    cfg = adapter.read_config(adapter.resolve(name, 5, checkpoint_root=good))
    assert cfg["hidden_size"] == sh["d_model"]
    for key, hf_key in (("n_layers", "num_hidden_layers"), ("d_vocab", "vocab_size"),
                        ("n_heads", "num_attention_heads")):
        bad = _config_only(tmp_path / key, 5, **(_hf(sh) | {hf_key: sh[key] * 2}))
        with pytest.raises(UserError, match=rf"{hf_key}={sh[key] * 2} but {name} has {key}={sh[key]}") as exc:
            adapter.read_config(adapter.resolve(name, 5, checkpoint_root=bad))
        assert "\n" not in str(exc.value)


def test_tiny_checkpoints_under_a_real_name_are_refused_in_one_line(tmp_path):
    root = build_checkpoints(tmp_path / "ckpts", [10], build_tokenizer(tmp_path / "tok"))
    with pytest.raises(UserError, match=r"hidden_size=\d+ but llm-jp/llm-jp-3-1\.8b has d_model=2048") as exc:
        adapter.load_model("llm-jp/llm-jp-3-1.8b", 10, checkpoint_root=root)
    assert "\n" not in str(exc.value)


def test_cli_shape_mismatch_exit_2(tmp_path, capsys):
    from llmjp_ckpt.cli import main

    sh = load_registry()["llm-jp/llm-jp-3-440m"].shape
    root = _config_only(tmp_path / "r", 7, **(_hf(sh) | {"hidden_size": 999}))
    code = main(["inspect", "--checkpoint-root", str(root), "llm-jp/llm-jp-3-440m", "--step", "7"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "hidden_size=999 but llm-jp/llm-jp-3-440m has d_model=1024" in err


def test_plan_uses_the_registered_shape_and_checks_layers():
    base = {"runner": {"training_tokens": 4096 * 100, "n_batches_in_buffer": 64, "dead_feature_window": 10}}
    cfg = TrainConfig.from_dict(base | {"model": {"source": "llm-jp/llm-jp-3-7.2b"}, "hook_layer": [8, 16, 32]})
    shape, where = model_shape(cfg)
    assert (shape.n_layers, shape.d_model, shape.d_mlp) == (32, 4096, 11008)
    assert where == "registered shape of llm-jp/llm-jp-3-7.2b"
    pl = plan(cfg, 141 * 2**30)
    assert sorted(s.sae_id for p in pl.passes for s in p.saes) == sorted(
        f"x16_k32_lr0.001_scalar_L{x}" for x in (8, 16, 32))
    bad = TrainConfig.from_dict(base | {"model": {"source": "llm-jp/llm-jp-3-150m"}, "hook_layer": [6, 13]})
    with pytest.raises(UserError, match=r"layer 13 is out of range: expected 1\.\.12"):
        plan(bad, 141 * 2**30)
