"""Builders for launch tests: the quick toy study written as a launch config."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from llmjp_ckpt.demo import demo_configs


def toy_launch(toy_dir: Path, out: Path, train: dict[str, Any] | None = None,
               **cluster: Any) -> Path:
    """``out/launch.yaml`` for the quick toy study (its data and train configs beside it).

    ``train`` overrides train-config fields (e.g. ``{"runner": {...}}`` merged one level deep);
    ``cluster`` sets cluster fields. Features, compare and site use their defaults, the site
    without sae-dashboard pages, features on 64 test windows.
    """
    out.mkdir(parents=True, exist_ok=True)
    data_cfg, train_cfg = demo_configs(toy_dir, quick=True)
    tr = dataclasses.asdict(train_cfg)
    for key, value in (train or {}).items():
        tr[key] = {**tr[key], **value} if isinstance(value, dict) else value
    (out / "data.yaml").write_text(yaml.safe_dump(dataclasses.asdict(data_cfg)), encoding="utf-8")
    (out / "train.yaml").write_text(yaml.safe_dump(tr), encoding="utf-8")
    (out / "site.yaml").write_text(yaml.safe_dump({"feature_pages": False}), encoding="utf-8")
    features = {"png": False, "max_windows": 64, "norm_study": False}  # small: a quick stage
    (out / "features.yaml").write_text(yaml.safe_dump(features), encoding="utf-8")
    (out / "compare.yaml").write_text(yaml.safe_dump({"png": False}), encoding="utf-8")
    cfg = {"data": str(out / "data.yaml"), "train": str(out / "train.yaml"),
           "features": str(out / "features.yaml"), "compare": str(out / "compare.yaml"),
           "site": str(out / "site.yaml"),
           "cluster": {"gpus_per_job": 0, "cpus_per_job": 1, "time": "02:00:00", **cluster}}
    path = out / "launch.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path
