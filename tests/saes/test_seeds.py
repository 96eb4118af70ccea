"""The grid's ``saes.seeds``: seed twins trained in the same activation pass (issue 15)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import llmjp_ckpt  # noqa: F401  registers the architecture
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.saes import training
from llmjp_ckpt.saes.config import SaeSpec, TrainConfig
from tests.helpers import build_one_checkpoint_run, train_config

BASE = "x4_k4_lr0.003_scalar"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    return build_one_checkpoint_run(tmp_path_factory.mktemp("seeds"))


def _cfg(world, seeds: list[int] | None) -> dict:
    saes = {"normalisation": ["scalar"]} | ({"seeds": seeds} if seeds is not None else {})
    return train_config(world["ckpts"], [10], saes=saes, metrics={"max_windows": 4, "ce": False})


def _train(world, tmp_path: Path, seeds: list[int] | None) -> dict[str, Path]:
    run = tmp_path / "run"
    shutil.copytree(world["run"] / "data", run / "data")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {p.name: p for p in training.train_run(_cfg(world, seeds), run)}
    finally:
        torch.set_num_threads(n)


def test_seed_twins_share_the_pass_and_seed_zero_is_unchanged(world, tmp_path):
    plain = _train(world, tmp_path / "plain", None)
    twins = _train(world, tmp_path / "twins", [0, 1])
    assert list(plain) == [BASE] and sorted(twins) == [BASE, BASE + "_s1"]
    w = {k: (p / "sae_weights.safetensors").read_bytes() for k, p in twins.items()}
    # seed 0: the same id, config hash and weights as before seeds existed
    assert w[BASE] == (plain[BASE] / "sae_weights.safetensors").read_bytes()
    meta0 = json.loads((plain[BASE] / "cfg.json").read_text())["metadata"]
    meta1 = json.loads((twins[BASE + "_s1"] / "cfg.json").read_text())["metadata"]
    assert json.loads((twins[BASE] / "cfg.json").read_text())["metadata"][
        "llmjp_config_hash"] == meta0["llmjp_config_hash"]
    assert w[BASE + "_s1"] != w[BASE]
    assert meta1["sae_seed"] == 1 and meta1["seed_group"] == BASE
    assert meta1["init_seed"] != meta0["init_seed"]
    m1 = json.loads((twins[BASE + "_s1"] / "metrics.json").read_text())
    assert m1["saes_in_pass"] == 2  # one activation pass for both seeds


def test_seed_ids_and_hash_fields():
    assert SaeSpec(4, 4, 3e-3, "scalar").sae_id == BASE
    assert SaeSpec(4, 4, 3e-3, "scalar", 2).sae_id == BASE + "_s2"
    assert "seed" not in SaeSpec(4, 4, 3e-3, "scalar").hash_fields()
    assert SaeSpec(4, 4, 3e-3, "scalar", 2).hash_fields()["seed"] == 2


@pytest.mark.parametrize("seeds", [[], [0, 0], [-1], [0, "1"]])
def test_bad_seeds_refused(world, seeds):
    with pytest.raises(UserError, match="seeds"):
        TrainConfig.from_dict(_cfg(world, seeds))
