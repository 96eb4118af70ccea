"""Compare on a layer sweep: transitions per layer and the layer x checkpoint share view."""

from __future__ import annotations

import json

import pytest
import torch

from llmjp_ckpt.compare import CompareConfig, compare_run
from llmjp_ckpt.compare.layers import table_rows
from llmjp_ckpt.runfolder import step_dir
from tests.compare_builders import feature_rows, unit, write_features_table, write_sae

STEPS = [10, 100]
N, D = 40, 32
KEEP = {1: 0.25, 2: 0.75}  # planted fraction of features kept from step 10 to 100, per layer
JA = {(1, 10): 10, (1, 100): 20, (2, 10): 30, (2, 100): 40}  # features labelled ja (the rest en)
CELL = "x4_k4_lr0.003_scalar"


def build_run(root):
    g = torch.Generator().manual_seed(0)
    rows = []
    for layer in (1, 2):
        sid = f"{CELL}_L{layer}"
        W = unit(torch.randn(N, D, generator=g))
        for t, step in enumerate(STEPS):
            if t:
                keep = torch.arange(N) < int(KEEP[layer] * N)
                W = torch.where(keep[:, None], W, unit(torch.randn(N, D, generator=g)))
            folder = write_sae(root / "saes" / step_dir(step) / sid, W, hook=f"blocks.{layer - 1}.hook_resid_post")
            cfg = json.loads((folder / "cfg.json").read_text())
            cfg["metadata"] |= {"layer_group": CELL, "hook_layer": layer}
            (folder / "cfg.json").write_text(json.dumps(cfg))
            rows += feature_rows(step, sid, N, ja=JA[layer, step])
    write_features_table(root, rows)
    return root


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = build_run(tmp_path_factory.mktemp("layers"))
    return root, compare_run(root, CompareConfig(png=False))


def test_transitions_per_layer(result):
    _, res = result
    for layer in (1, 2):
        pair = res["families"][f"{CELL}_L{layer}"]["pairs"][0]
        assert pair["shared_fraction"] == pytest.approx(KEEP[layer])


def test_layer_by_checkpoint_shares(result):
    root, _ = result
    view = json.loads((root / "analysis" / "transitions.json").read_text())["layers"]
    assert list(view) == [CELL]
    v = view[CELL]
    assert v["layers"] == [1, 2] and v["checkpoints"] == STEPS
    assert v["sae_ids"] == {"1": f"{CELL}_L1", "2": f"{CELL}_L2"}
    for (layer, step), n_ja in JA.items():
        assert v["shares"]["language_paper"][str(layer)][str(step)]["ja"] == pytest.approx(n_ja / N)
    assert v["shared_fraction"] == {"1": {"10→100": pytest.approx(0.25)}, "2": {"10→100": pytest.approx(0.75)}}
    rows = [r for r in table_rows(view) if r["class"] == "ja"]
    assert {(int(r["layer"]), r["checkpoint"]): r["share"] for r in rows} == pytest.approx(
        {k: n / N for k, n in JA.items()})


def test_layer_figures_written(result):
    root, res = result
    names = set(res["figures"])
    for name in (f"layers_language_paper_{CELL}", f"layers_granularity_{CELL}",
                 f"layers_shared_fraction_{CELL}"):
        assert name in names, sorted(names)
    html = next((root / "analysis" / "figures").glob(f"layers_language_paper_{CELL}*.html")).read_text()
    assert "L1" in html and "L2" in html


def test_no_sweep_no_layer_view(tmp_path):
    root = build_run(tmp_path)
    for folder in (root / "saes").glob("iter_*/*"):
        cfg = json.loads((folder / "cfg.json").read_text())
        cfg["metadata"].pop("layer_group")
        (folder / "cfg.json").write_text(json.dumps(cfg))
    res = compare_run(root, CompareConfig(png=False))
    assert res["layers"] == {}
    assert not [n for n in res["figures"] if n.startswith("layers_")]
