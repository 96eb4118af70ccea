"""The model-size view: two compared runs (two widths) side by side."""

from __future__ import annotations

import json

import pytest
import torch

from llmjp_ckpt.cli import main
from llmjp_ckpt.compare import CompareConfig, compare_run
from llmjp_ckpt.runfolder import step_dir
from tests.compare_builders import feature_rows, unit, write_features_table, write_sae

STEPS = [10, 100]
N = 40


def build_run(root, d: int, keep: float, n_ja: int):
    g = torch.Generator().manual_seed(d)
    W = unit(torch.randn(N, d, generator=g))
    rows = []
    for t, step in enumerate(STEPS):
        if t:
            k = torch.arange(N) < int(keep * N)
            W = torch.where(k[:, None], W, unit(torch.randn(N, d, generator=g)))
        write_sae(root / "saes" / step_dir(step) / "fam", W)
        rows += feature_rows(step, "fam", N, ja=n_ja)
    write_features_table(root, rows)
    compare_run(root, CompareConfig(png=False))
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("sizes")
    return build_run(base / "small", 16, 0.25, 10), build_run(base / "large", 48, 0.75, 30)


def test_two_sizes_side_by_side(runs, tmp_path, capsys):
    small, large = runs
    out = tmp_path / "out"
    assert main(["sizes", "--run", str(small), "--run", str(large), "--label", "150m", "--label", "1.8b",
                 "--out", str(out), "--no-png"]) == 0
    view = json.loads((out / "sizes.json").read_text())
    assert [r["label"] for r in view["runs"]] == ["150m", "1.8b"]
    fam = view["families"]["fam"]
    assert fam["150m"]["shared_fraction"]["10→100"] == pytest.approx(0.25)
    assert fam["1.8b"]["shared_fraction"]["10→100"] == pytest.approx(0.75)
    assert fam["150m"]["shares"]["language_paper"]["10"]["ja"] == pytest.approx(10 / N)
    assert fam["1.8b"]["shares"]["language_paper"]["100"]["ja"] == pytest.approx(30 / N)
    assert (out / "sizes_language_paper_fam.html").is_file()
    assert "fam [1.8b]: shared fraction 10→100 0.75" in capsys.readouterr().out


@pytest.mark.parametrize("which", ["one", "missing"])
def test_bad_input_exit_2_one_line_nothing_written(runs, tmp_path, capsys, which):
    small, _ = runs
    out = tmp_path / "out"
    argv = ["sizes", "--run", str(small), "--out", str(out)]
    if which == "missing":
        argv += ["--run", str(tmp_path / "nowhere")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert ("at least two runs" if which == "one" else "transitions.json: missing") in err
    assert not out.exists()
