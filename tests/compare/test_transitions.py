"""The compare stage on a synthetic run folder: transitions.json against a recomputation from
features.parquet, lineage files, figures, manifest skipping, bad input, the CLI."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from llmjp_ckpt.cli import main
from llmjp_ckpt.compare import CompareConfig, compare_run
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.runfolder import RunFolder, step_dir
from tests.compare_builders import unit, write_sae

STEPS = [10, 1000, 100000]
N, D = 60, 64
LANG = ["ja", "en", "mix", None]
GRAN = ["token", "synonym", "semantic", "uninterpretable", None]


def build_run(root, seed: int = 0):
    """RUN/saes/iter_*/fam/ (3 checkpoints, 70 % carried over each step) + RUN/saes/iter_*/solo/
    (one checkpoint) + RUN/analysis/features.parquet with random labels."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    W = unit(torch.randn(N, D, generator=g))
    rows = []
    for t, step in enumerate(STEPS):
        if t:
            keep = torch.rand(N, generator=g) < 0.7
            fresh = unit(torch.randn(N, D, generator=g))
            W = torch.where(keep[:, None], unit(W + 0.1 * torch.randn(N, D, generator=g)), fresh)
            W = W[torch.randperm(N, generator=g)]
        # dead latents (saes.dead) planted independently of the test-split frequency below
        write_sae(root / "saes" / step_dir(step) / "fam", W, counts=rng.choice([0, 50], N))
        for f in range(N - 5):  # a few features absent from the table
            rows.append({"checkpoint": step, "sae_id": "fam", "feature": f,
                         "frequency": float(rng.choice([0.0, 0.01, 0.2])),
                         "max_activation": 1.0, "mean_activation": 0.5,
                         "language_paper": LANG[rng.integers(4)], "language_script": LANG[rng.integers(4)],
                         "granularity": GRAN[rng.integers(5)], "granularity_confidence": 0.5})
    write_sae(root / "saes" / step_dir(STEPS[0]) / "solo", unit(torch.randn(8, D, generator=g)))
    for f in range(8):
        rows.append({"checkpoint": STEPS[0], "sae_id": "solo", "feature": f, "frequency": 0.1,
                     "max_activation": 1.0, "mean_activation": 0.5, "language_paper": "ja",
                     "language_script": "ja", "granularity": "token", "granularity_confidence": 0.9})
    (root / "analysis").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(root / "analysis" / "features.parquet")
    return root


@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    root = build_run(tmp_path_factory.mktemp("run"))
    result = compare_run(root, CompareConfig(png=False))
    return root, result


def _recomputed_shares(df, subset, column, run=None):
    if subset == "alive" and run is None:
        df = df[df["frequency"] > 0]
    elif subset == "alive":  # the one definition of dead: the SAE's firing counts
        from llmjp_ckpt.saes.dead import alive_mask

        masks = {(s, sid): alive_mask(run / "saes" / step_dir(s) / sid)
                 for s, sid in set(zip(df["checkpoint"], df["sae_id"]))}
        df = df[[bool(masks[(s, sid)][f]) for s, sid, f in
                 zip(df["checkpoint"], df["sae_id"], df["feature"])]]
    elif subset == "interpretable":
        df = df[df["granularity"].notna() & (df["granularity"] != "uninterpretable")]
    out = {}
    for step, d in df.groupby("checkpoint"):
        counts = d[column].fillna("unlabelled").value_counts()
        out[str(step)] = {k: v / len(d) for k, v in counts.items()}
    return out


def test_transitions_json_equals_recomputation_from_parquet(done_run):
    root, _ = done_run
    data = json.loads((root / "analysis" / "transitions.json").read_text(encoding="utf-8"))
    df = pd.read_parquet(root / "analysis" / "features.parquet")
    fam = df[df["sae_id"] == "fam"]
    per = data["families"]["fam"]["per_checkpoint"]
    for subset in ("all", "alive", "interpretable"):
        for column in ("language_paper", "language_script", "granularity"):
            expected = _recomputed_shares(fam, subset, column, root)
            got = {s: per[subset][s][column] for s in per[subset]}
            assert got.keys() == expected.keys()
            for s in expected:
                assert got[s] == pytest.approx(expected[s]), (subset, column, s)
    # cross-tab counts over all features
    for step, d in fam.groupby("checkpoint"):
        ct = pd.crosstab(d["language_paper"].fillna("unlabelled"), d["granularity"].fillna("unlabelled"))
        got = per["all"][str(step)]["crosstab"]
        assert sum(sum(v.values()) for v in got.values()) == len(d)
        for lang in ct.index:
            for gran in ct.columns:
                assert got.get(lang, {}).get(gran, 0) == ct.loc[lang, gran]


def test_flows_equal_recomputation_from_match_csv(done_run):
    root, _ = done_run
    data = json.loads((root / "analysis" / "transitions.json").read_text(encoding="utf-8"))
    df = pd.read_parquet(root / "analysis" / "features.parquet")
    fam = df[df["sae_id"] == "fam"]
    pairs = data["families"]["fam"]["pairs"]
    assert [(p["from"], p["to"]) for p in pairs] == [(10, 1000), (1000, 100000)]
    for p in pairs:
        path = root / "analysis" / "matches" / "fam" / f"{step_dir(p['from'])}__{step_dir(p['to'])}.csv"
        rows = [r for r in csv.DictReader(path.open(encoding="utf-8")) if r["feature_b"]]
        assert len(rows) == p["shared"] > 0
        a = fam[fam["checkpoint"] == p["from"]].set_index("feature")
        b = fam[fam["checkpoint"] == p["to"]].set_index("feature")
        for column in ("language_paper", "granularity"):
            expected: dict[str, int] = {}
            for r in rows:
                fa, fb = int(r["feature_a"]), int(r["feature_b"])
                if fa in a.index and fb in b.index:
                    x, y = a.loc[fa, column], b.loc[fb, column]
                    key = f"{'unlabelled' if pd.isna(x) else x} -> {'unlabelled' if pd.isna(y) else y}"
                    expected[key] = expected.get(key, 0) + 1
            assert p["flows"][column] == expected


def test_lineage_files_and_single_checkpoint_note(done_run):
    root, result = done_run
    assert any("solo" in n and "nothing to compare" in n for n in result["notes"])
    assert result["families"]["solo"]["pairs"] == []
    chains = pd.read_parquet(root / "analysis" / "lineages" / "fam.parquet")
    from llmjp_ckpt.saes.dead import alive_mask

    live = sum(int(alive_mask(root / "saes" / step_dir(s) / "fam").sum()) for s in STEPS)
    assert 0 < live < 3 * N  # the dead latents (firing counts) belong to no chain
    assert len(chains) == live and not chains.duplicated(["checkpoint", "feature"]).any()
    lj = json.loads((root / "analysis" / "lineages.json").read_text(encoding="utf-8"))
    p = result["families"]["fam"]["pairs"][0]
    first = result["families"]["fam"]["pairs"][0]["live_a"]
    assert first == N - result["families"]["fam"]["dead_latents"][str(STEPS[0])]
    births = sum(q["births"] for q in result["families"]["fam"]["pairs"])
    assert lj["fam"]["chains"] == first + births
    assert p["births"] == p["live_b"] - p["shared"]


def test_figures_exist_and_work_offline(done_run):
    _, result = done_run
    names = set(result["figures"])
    assert {"shares_fam", "sankey_language_paper_fam", "sankey_granularity_fam",
            "match_similarity_fam", "mix_origins_fam", "shares_solo"} <= names
    for paths in result["figures"].values():
        html = Path(paths[0]).read_text(encoding="utf-8")
        assert '<meta charset="utf-8"' in html
        assert "<script src=\"http" not in html and len(html) < 1_000_000  # plotly.js shared:
        assert 'src="plotly.min.js"' in html and (Path(paths[0]).parent / "plotly.min.js").is_file()


def test_rerun_is_skipped_and_changed_config_reruns(done_run):
    root, _ = done_run
    assert RunFolder(root).stage_record("compare")["status"] == "done"
    assert compare_run(root, CompareConfig(png=False)).get("skipped") is True
    again = compare_run(root, CompareConfig(png=False, related_threshold=0.6))
    assert not again.get("skipped") and again["related_threshold"] == 0.6


def test_png_written_or_skipped_with_a_log_line(tmp_path, caplog):
    root = build_run(tmp_path)
    with caplog.at_level(logging.WARNING):
        result = compare_run(root, CompareConfig())
    pngs = [p for paths in result["figures"].values() for p in paths if p.endswith(".png")]
    if len(pngs) != len(result["figures"]):
        assert "PNG export skipped" in caplog.text
    else:
        assert all(Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_bad_input(tmp_path, capsys):
    with pytest.raises(UserError, match="no SAEs found"):
        compare_run(tmp_path / "empty")
    root = build_run(tmp_path / "r")
    (root / "analysis" / "features.parquet").unlink()
    with pytest.raises(UserError, match="llmjp-ckpt features"):
        compare_run(root)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("match:\n  treshold: 0.5\n", encoding="utf-8")
    with pytest.raises(UserError, match="treshold"):
        CompareConfig.from_yaml(cfg)
    assert main(["compare", "--run", str(root), "--config", str(cfg)]) == 2
    assert "treshold" in capsys.readouterr().err


def test_mismatched_widths_across_checkpoints_fail_clearly(tmp_path):
    root = build_run(tmp_path)
    write_sae(root / "saes" / step_dir(STEPS[1]) / "fam", unit(torch.randn(N, D + 1)))
    with pytest.raises(UserError, match="d_in"):
        compare_run(root, CompareConfig(png=False))
    assert RunFolder(root).stage_record("compare")["status"] == "failed"


def test_compare_cli(tmp_path, capsys):
    root = build_run(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("png: false\nmatch:\n  threshold: 0.8\n", encoding="utf-8")
    assert main(["compare", "--run", str(root), "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "fam 10→1000: shared" in out and "solo: only one checkpoint" in out


def test_share_intervals_in_transitions_json_carry_the_loco_confusion(done_run):
    from llmjp_ckpt.compare import transitions as tr
    from llmjp_ckpt.labels.uncertainty import load_confusion

    root, result = done_run
    assert RunFolder(root).stage_record("compare")["config"]["granularity_confusion"] == load_confusion()
    df = tr.load_features(root / "analysis" / "features.parquet")
    per = result["families"]["fam"]["per_checkpoint"]
    for subset, steps in per.items():
        for step, row in steps.items():
            for col in tr.CLASS_COLUMNS:
                iv = row["intervals"][col]
                assert set(row[col]) <= set(iv), (subset, step, col)
                for k, v in iv.items():
                    assert 0.0 <= v["lo"] <= v["corrected"] <= v["hi"] <= 1.0
                    if col != "granularity":  # latents resampled only: the band holds the share
                        assert v["lo"] <= row[col][k] <= v["hi"] and v["share"] == pytest.approx(row[col][k], abs=1e-4)
    d = df[(df["sae_id"] == "fam") & (df["checkpoint"] == STEPS[-1])]
    plain = tr.intervals(d, "granularity")
    got = per["all"][str(STEPS[-1])]["intervals"]["granularity"]
    assert got == tr.intervals(d, "granularity", load_confusion())  # seeded: reproducible
    assert got["unlabelled"]["corrected"] == pytest.approx(plain["unlabelled"]["corrected"], abs=0.03)
    widths = [got[k]["hi"] - got[k]["lo"] - (plain[k]["hi"] - plain[k]["lo"]) for k in ("token", "semantic")]
    assert all(w > 0 for w in widths)  # the classifier's errors widen the band
    from llmjp_ckpt.compare.figures import shares_figure

    fig = shares_figure(per, "fam")
    bands = [t for t in fig.data if t.fill == "toself"]
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert len(bands) == len(lines) > 0


def test_features_record_decides_the_confusion(tmp_path):
    from llmjp_ckpt.compare.stage import granularity_confusion

    run = RunFolder(tmp_path)
    mine = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    run.record("features", {"features": {"granularity_params": None}}, "done", granularity_confusion=mine)
    assert granularity_confusion(run) == mine
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"fit": {}, "params": {}}), encoding="utf-8")
    run.record("features", {"features": {"granularity_params": str(params)}}, "done")
    assert granularity_confusion(run) is None  # a refit file without LOCO: latents only
