"""The seed baseline in compare: cross-seed shared fraction per checkpoint, pairs beside it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from llmjp_ckpt.compare import CompareConfig, compare_run
from llmjp_ckpt.runfolder import step_dir
from llmjp_ckpt.site.render import tables
from tests.compare_builders import feature_rows, unit, write_features_table, write_sae

STEPS = [10, 100]
N, D = 40, 64
KEEP = {10: 0.5, 100: 0.75}  # planted fraction of seed 0's features that seed 1 also learns


def _tag(folder, seed: int, group: str) -> None:
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["metadata"] |= {"sae_seed": seed, "seed_group": group}
    (folder / "cfg.json").write_text(json.dumps(cfg))


def build_run(root):
    """fam (seed 0) and fam_s1 (seed 1) at two steps; seed 1 keeps KEEP[step] of seed 0's
    directions (permuted, slightly perturbed), the rest fresh; fam keeps 60 % over steps."""
    g = torch.Generator().manual_seed(0)
    W0 = unit(torch.randn(N, D, generator=g))
    rows = []
    for t, step in enumerate(STEPS):
        if t:
            keep = torch.arange(N) < int(0.6 * N)
            W0 = torch.where(keep[:, None], W0, unit(torch.randn(N, D, generator=g)))
        n_keep = int(KEEP[step] * N)
        W1 = torch.cat([unit(W0[:n_keep] + 0.05 * torch.randn(n_keep, D, generator=g)),
                        unit(torch.randn(N - n_keep, D, generator=g))])
        W1 = W1[torch.randperm(N, generator=g)]
        for sid, W, seed in (("fam", W0, 0), ("fam_s1", W1, 1)):
            folder = write_sae(root / "saes" / step_dir(step) / sid, W)
            _tag(folder, seed, "fam")
            rows += feature_rows(step, sid, N)
    write_features_table(root, rows)
    return root


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = build_run(tmp_path_factory.mktemp("seeds"))
    return root, compare_run(root, CompareConfig(png=False))


def test_cross_seed_fraction_per_checkpoint_is_the_planted_one(result):
    root, _ = result
    on_disk = json.loads((root / "analysis" / "transitions.json").read_text())
    sb = on_disk["seed_baseline"]
    assert list(sb) == ["fam"] and sb["fam"]["seeds"] == [0, 1]
    got = {r["checkpoint"]: r["cross_seed_shared_fraction"] for r in sb["fam"]["per_checkpoint"]}
    assert got == pytest.approx(KEEP)
    assert (root / "analysis" / "matches" / "seeds" / "fam" /
            f"{step_dir(10)}__s0__s1.csv").is_file()


def test_every_cross_checkpoint_pair_beside_the_baseline(result):
    _, res = result
    fam = res["families"]["fam"]["pairs"][0]
    assert fam["shared_fraction"] == pytest.approx(0.6)
    base = np.mean([KEEP[10], KEEP[100]])
    assert fam["seed_baseline"] == pytest.approx(base)
    assert fam["shared_fraction_ratio"] == pytest.approx(0.6 / base)
    cross = res["seed_baseline"]["fam"]["cross_checkpoint"]
    assert {c["sae_id"] for c in cross} == {"fam", "fam_s1"}  # the twin's own lineage too
    mine = next(c for c in cross if c["sae_id"] == "fam")
    assert mine["baseline_from"] == pytest.approx(0.5)
    assert mine["ratio"] == pytest.approx(0.6 / base)


def test_baseline_figure_and_site_table(result):
    root, res = result
    name = "seed_baseline_fam"
    html = (root / "analysis" / "figures" / f"{name}.html").read_text(encoding="utf-8")
    assert "cross-seed (same checkpoint)" in html
    page = "".join(tables(res, ""))
    assert "seed_baseline / fam / per_checkpoint" in page and "cross_seed_shared_fraction" in page


def test_no_twins_no_baseline(tmp_path):
    root = tmp_path / "run"
    write_sae(root / "saes" / step_dir(10) / "solo", unit(torch.randn(8, D)))
    (root / "analysis").mkdir(parents=True)
    pd.DataFrame([{"checkpoint": 10, "sae_id": "solo", "feature": 0, "frequency": 0.1,
                   "max_activation": 1.0, "mean_activation": 0.5, "language_paper": "ja",
                   "language_script": "ja", "granularity": "token",
                   "granularity_confidence": 0.9}]).to_parquet(
                       root / "analysis" / "features.parquet")
    assert compare_run(root, CompareConfig(png=False))["seed_baseline"] == {}
