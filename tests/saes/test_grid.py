"""The grid report reads SAEs through runfolder.sae_folders and JSON through config.read_json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmjp_ckpt.errors import UserError
from llmjp_ckpt.runfolder import step_dir
from llmjp_ckpt.saes import grid


def _sae(run: Path, step: int, sae_id: str, metrics: dict | str | None) -> None:
    folder = run / "saes" / step_dir(step) / sae_id
    folder.mkdir(parents=True)
    (folder / "cfg.json").write_text("{}")
    if metrics is not None:
        text = metrics if isinstance(metrics, str) else json.dumps({**metrics, "sae_id": sae_id})
        (folder / "metrics.json").write_text(text)


def _m(norm: str, lr: float, fvu: float) -> dict:
    return {"checkpoint_step": 10, "token_norm": norm, "expansion": 4, "k": 8, "lr": lr,
            "fvu": fvu, "dead_fraction": 0.1}


def test_collect_and_best_per_cell(tmp_path: Path) -> None:
    _sae(tmp_path, 10, "a", _m("scalar", 1e-3, 0.30))
    _sae(tmp_path, 10, "b", _m("scalar", 1e-4, 0.20))
    _sae(tmp_path, 10, "c", _m("none", 1e-3, 0.50))
    _sae(tmp_path, 10, "no-metrics", None)  # an SAE without metrics.json is left out
    (tmp_path / "saes" / "_work" / "x").mkdir(parents=True)  # not an SAE folder
    (tmp_path / "saes" / "_work" / "x" / "metrics.json").write_text(json.dumps(_m("none", 1, 9)))
    df = grid.collect(tmp_path)
    assert sorted(df["sae_id"]) == ["a", "b", "c"]
    best = grid.best_per_cell(df)
    assert sorted(zip(best["token_norm"], best["lr"])) == [("none", 1e-3), ("scalar", 1e-4)]


def test_bad_metrics_json_is_one_line(tmp_path: Path) -> None:
    _sae(tmp_path, 10, "a", "{not json")
    with pytest.raises(UserError, match="metrics.json"):
        grid.collect(tmp_path)


def test_no_saes(tmp_path: Path) -> None:
    with pytest.raises(UserError):
        grid.collect(tmp_path)
    _sae(tmp_path, 10, "a", None)
    with pytest.raises(UserError, match="no SAE with metrics.json"):
        grid.collect(tmp_path)
