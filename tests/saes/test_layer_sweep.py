"""Layer sweeps (issue 14 item 4): ``hook_layer: [1, 2]`` trains SAEs at both layers from one
forward pass per batch; ids carry ``_L{layer}``; a layer outside the model is refused up front."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

import llmjp_ckpt  # noqa: F401  registers the architecture
from llmjp_ckpt.data import corpus
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.runfolder import RunFolder
from llmjp_ckpt.saes import training
from llmjp_ckpt.saes.config import TrainConfig
from llmjp_ckpt.saes.plan import ModelShape, plan
from tests.helpers import build_one_checkpoint_run, train_config

BASE = "x4_k4_lr0.003_scalar"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    return build_one_checkpoint_run(tmp_path_factory.mktemp("sweep"))


def _cfg(world, hook_layer) -> dict:
    return train_config(world["ckpts"], [10], hook_layer=hook_layer, saes={"normalisation": ["scalar"]},
                        metrics={"max_windows": 4, "ce": False})


def _fresh(world, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(world["run"] / "data", run / "data")
    return run


def _train_counting(world, tmp_path: Path, hook_layer, monkeypatch) -> tuple[dict[str, Path], list[set[str]]]:
    """Train; return the SAE folders and, per language-model forward during SAELens' training
    loop, the hooks that forward cached."""
    from sae_lens import MultiSAETrainingRunner
    from transformer_lens import HookedTransformer

    forwards: list[set[str]] = []
    in_training = [False]
    real_run, real_cache = MultiSAETrainingRunner.run, HookedTransformer.run_with_cache

    def counting_run(self):
        in_training[0] = True
        try:
            return real_run(self)
        finally:
            in_training[0] = False

    def run_with_cache(self, *args, **kwargs):
        if in_training[0]:
            names = kwargs.get("names_filter")
            forwards.append(set(names) if isinstance(names, (list, tuple, set)) else {str(names)})
        return real_cache(self, *args, **kwargs)

    with monkeypatch.context() as mp:
        mp.setattr(MultiSAETrainingRunner, "run", counting_run)
        mp.setattr(HookedTransformer, "run_with_cache", run_with_cache)
        out = training.train_run(_cfg(world, hook_layer), _fresh(world, tmp_path))
    return {p.name: p for p in out}, forwards


def test_two_layer_sweep_one_forward_per_batch(world, tmp_path, monkeypatch):
    single, f1 = _train_counting(world, tmp_path / "one", 2, monkeypatch)
    sweep, f2 = _train_counting(world, tmp_path / "two", [1, 2], monkeypatch)
    # the single-layer layout is unchanged; the sweep's ids carry the layer
    assert list(single) == [BASE]
    assert sorted(sweep) == [BASE + "_L1", BASE + "_L2"]
    assert all(p.parent.name == "iter_0000010" for p in sweep.values())
    # one forward per batch: as many as the one-layer run, each caching both hooks
    assert len(f1) > 0 and len(f2) == len(f1)
    assert all(h == {"blocks.1.hook_resid_post"} for h in f1)
    assert all(h == {"blocks.0.hook_resid_post", "blocks.1.hook_resid_post"} for h in f2)
    for layer in (1, 2):
        folder = sweep[f"{BASE}_L{layer}"]
        meta = json.loads((folder / "cfg.json").read_text())["metadata"]
        assert meta["hook_name"] == f"blocks.{layer - 1}.hook_resid_post"
        assert meta["hook_layer"] == layer and meta["layer_group"] == BASE
        m = json.loads((folder / "metrics.json").read_text())
        assert m["hook_name"] == meta["hook_name"] and m["hook_layer"] == layer
        assert (folder / "firing_counts.safetensors").is_file()
    w1 = (sweep[BASE + "_L1"] / "sae_weights.safetensors").read_bytes()
    w2 = (sweep[BASE + "_L2"] / "sae_weights.safetensors").read_bytes()
    assert w1 != w2
    assert "layer_group" not in json.loads((single[BASE] / "cfg.json").read_text())["metadata"]


def test_hook_names_and_ints_mix(world):
    cfg = TrainConfig.from_dict(_cfg(world, ["blocks.0.hook_mlp_out", 2]))
    assert [s.sae_id for s in cfg.specs()] == [BASE + "_Lblocks.0.hook_mlp_out", BASE + "_L2"]
    # a layer's hash covers its own layer only: adding a layer does not retrain the others
    a = training.spec_hash(TrainConfig.from_dict(_cfg(world, [1, 2])), 10,
                           TrainConfig.from_dict(_cfg(world, [1, 2])).specs()[1], "d")
    b_cfg = TrainConfig.from_dict(_cfg(world, [1, 2, "blocks.0.hook_mlp_out"]))
    assert a == training.spec_hash(b_cfg, 10, b_cfg.specs()[1], "d")


def test_plan_counts_one_buffer_per_hook_and_the_deepest_forward(world):
    shape = ModelShape(n_layers=24, d_model=2048, n_heads=16, d_mlp=7168, d_vocab=99584)
    base = _cfg(world, 12) | {"runner": {**_cfg(world, 12)["runner"]}}
    one = plan(TrainConfig.from_dict(base), 10**12, shape=shape)
    two = plan(TrainConfig.from_dict(base | {"hook_layer": [6, 12]}), 10**12, shape=shape)
    deep = plan(TrainConfig.from_dict(base | {"hook_layer": [6, 24]}), 10**12, shape=shape)
    assert len(two.passes) == 1 and len(two.passes[0].saes) == 2
    assert two.passes[0].parts["buffer"] == 2 * one.passes[0].parts["buffer"]
    # the LM part of the time is the same (one forward to block 12); the SAE part doubles
    lm_one = one.passes[0].seconds - (two.passes[0].seconds - one.passes[0].seconds)
    assert lm_one > 0
    assert deep.passes[0].seconds > two.passes[0].seconds


@pytest.mark.parametrize("hook_layer, match", [
    ([2, 5], r"layer 5 is out of range: expected 1\.\.2"),
    (["blocks.7.hook_resid_post"], r"'blocks\.7\.hook_resid_post' is out of range: expected a hook of blocks 0\.\.1"),
])
def test_layer_outside_the_model_writes_nothing(world, tmp_path, hook_layer, match):
    run = _fresh(world, tmp_path)
    with pytest.raises(UserError, match=match):
        training.train_run(_cfg(world, hook_layer), run)
    assert not (run / "saes").exists()
    assert RunFolder(run).stage_record("train") is None


def test_cli_layer_outside_the_model_exit_2_one_line(world, tmp_path, capsys):
    from llmjp_ckpt.cli import main

    run = _fresh(world, tmp_path)
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(_cfg(world, [1, 3])), encoding="utf-8")
    assert main(["train", "--config", str(p), "--run", str(run)]) == 2
    err = capsys.readouterr().err
    assert "layer 3 is out of range" in err and len(err.strip().splitlines()) == 1
    assert not (run / "saes").exists()


@pytest.mark.parametrize("hook_layer", [[], [1, 1], ["resid"], [0]])
def test_bad_sweeps_refused_at_load(world, hook_layer):
    with pytest.raises(UserError, match="hook_layer"):
        TrainConfig.from_dict(_cfg(world, hook_layer))


@pytest.mark.slow
def test_toy_two_layer_sweep_through_features_compare_and_site(toy_dir, tmp_path, monkeypatch):
    """The quick toy, layers 2 and 4 from one forward per batch, through every stage to the site."""
    import dataclasses

    from llmjp_ckpt import demo
    from llmjp_ckpt.compare import CompareConfig, compare_run
    from llmjp_ckpt.features.analyze import analyze_run
    from llmjp_ckpt.site import build_site

    data_cfg, train_cfg = demo.demo_configs(toy_dir, quick=True)
    run = tmp_path / "run"
    corpus.prepare_data(data_cfg, run)
    cfg = dataclasses.replace(train_cfg, hook_layer=[2, 4],
                              saes=dataclasses.replace(train_cfg.saes, normalisation=["scalar"]))
    steps = json.loads((toy_dir / "toy.json").read_text())["steps"]
    from sae_lens import MultiSAETrainingRunner
    from transformer_lens import HookedTransformer

    hooks_seen: list[set[str]] = []
    real_run, real_cache = MultiSAETrainingRunner.run, HookedTransformer.run_with_cache
    flag = [False]

    def counting_run(self):
        flag[0] = True
        try:
            return real_run(self)
        finally:
            flag[0] = False

    def run_with_cache(self, *args, **kwargs):
        if flag[0]:
            hooks_seen.append(set(kwargs.get("names_filter") or []))
        return real_cache(self, *args, **kwargs)

    with monkeypatch.context() as mp:
        mp.setattr(MultiSAETrainingRunner, "run", counting_run)
        mp.setattr(HookedTransformer, "run_with_cache", run_with_cache)
        out = training.train_run(cfg, run)
    assert sorted({p.name for p in out}) == ["x4_k8_lr0.003_scalar_L2", "x4_k8_lr0.003_scalar_L4"]
    assert len(out) == 2 * len(steps)
    assert hooks_seen and all(h == {"blocks.1.hook_resid_post", "blocks.3.hook_resid_post"} for h in hooks_seen)
    analyze_run(run)
    res = compare_run(run, CompareConfig(png=False))
    view = res["layers"]["x4_k8_lr0.003_scalar"]
    assert view["layers"] == [2, 4] and view["checkpoints"] == steps
    for layer in ("2", "4"):
        assert set(view["shares"]["language_paper"][layer]) == {str(s) for s in steps}
        assert len(view["shared_fraction"][layer]) == len(steps) - 1
    index = build_site(run)
    text = index.read_text(encoding="utf-8")
    assert "layers_language_paper_x4_k8_lr0.003_scalar" in text
    assert "layers_shared_fraction_x4_k8_lr0.003_scalar" in text


def test_layer_groups_keep_seed_twins_apart(world):
    cfg = TrainConfig.from_dict(train_config(world["ckpts"], [10], hook_layer=[1, 2],
                                             saes={"normalisation": ["scalar"], "seeds": [0, 1]}))
    got = {s.sae_id: training.layer_group(s) for s in cfg.specs()}
    assert got == {BASE + "_L1": BASE, BASE + "_L1_s1": BASE + "_s1",
                   BASE + "_L2": BASE, BASE + "_L2_s1": BASE + "_s1"}
