"""Compare ours against imported peer SAEs (the authors' format, via import-peer) per checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import llmjp_ckpt  # noqa: F401  registers the architecture
from llmjp_ckpt.cli import main
from llmjp_ckpt.compare import CompareConfig, compare_run
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.hub.peer import import_peer
from llmjp_ckpt.runfolder import RunFolder, step_dir
from tests.compare_builders import feature_rows, unit, write_features_table, write_sae

HOOK = "blocks.11.hook_resid_post"
STEPS = [10, 100]
N, N_PEER, D = 40, 30, 32
PLANTED = {10: 12, 100: 24}  # peer features planted near one of ours (cosine ~0.99)


def _peer_format(folder, W: torch.Tensor, k: int = 4) -> None:
    """An SAE in the authors' format: config.json + encoder/decoder safetensors."""
    folder.mkdir(parents=True, exist_ok=True)
    n, d = W.shape
    (folder / "config.json").write_text(json.dumps({"model_type": "topk_sae", "d_in": d, "num_latents": n, "k": k}))
    save_file({"encoder.weight": W.contiguous(), "encoder.bias": torch.zeros(n),
               "decoder.weight": W.T.contiguous(), "b_dec": torch.zeros(d)}, str(folder / "model.safetensors"))


def build_run(root):
    g = torch.Generator().manual_seed(0)
    rows = []
    for step in STEPS:
        ours = unit(torch.randn(N, D, generator=g))
        write_sae(root / "saes" / step_dir(step) / "fam", ours, hook=HOOK)
        n = PLANTED[step]
        theirs = torch.cat([unit(ours[:n] + 0.02 * torch.randn(n, D, generator=g)),
                            unit(torch.randn(N_PEER - n, D, generator=g))])
        theirs = theirs[torch.randperm(N_PEER, generator=g)]
        _peer_format(root / "authors" / f"c{step}", theirs)
        import_peer(str(root / "authors" / f"c{step}"), root / "peer" / step_dir(step) / "study", hook_name=HOOK)
        rows += feature_rows(step, "fam", N)
    write_features_table(root, rows)
    return root


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = build_run(tmp_path_factory.mktemp("peers"))
    return root, compare_run(root, CompareConfig(png=False))


def test_how_many_of_theirs_ours_finds_per_checkpoint(result):
    root, _ = result
    peers = json.loads((root / "analysis" / "transitions.json").read_text())["peers"]
    assert list(peers) == ["study"]
    rows = {r["checkpoint"]: r for r in peers["study"]["per_checkpoint"]}
    assert sorted(rows) == STEPS
    for step, n in PLANTED.items():
        r = rows[step]
        assert r["sae_id"] == "fam" and r["peer_features"] == N_PEER and r["our_features"] == N
        assert r["found"] == n and r["found_fraction"] == pytest.approx(n / N_PEER)
        assert r["median_cosine_found"] > 0.98
        assert r["median_nearest_cosine"] < r["median_cosine_found"]
    assert (root / "analysis" / "matches" / "peer" / "study" / "fam" / f"{step_dir(10)}.csv").is_file()


def test_peer_figure_written(result):
    _, res = result
    assert "peer_study" in res["figures"]


def test_other_hook_is_noted_not_compared(tmp_path):
    root = build_run(tmp_path)
    other = root / "peer" / step_dir(10) / "other"
    import_peer(str(root / "authors" / "c10"), other, hook_name="blocks.5.hook_resid_post")
    res = compare_run(root, CompareConfig(png=False))
    assert res["peers"]["other"]["per_checkpoint"] == []
    assert "not compared" in res["peers"]["other"]["notes"][0]


def test_peer_dir_field_and_cli_flag(result, tmp_path, capsys):
    root, _ = result
    moved = tmp_path / "elsewhere"
    import shutil

    shutil.copytree(root / "peer", moved)
    assert main(["compare", "--run", str(root), "--peer", str(moved), "--force"]) == 0
    out = capsys.readouterr().out
    assert f"peer study step 10: fam finds {PLANTED[10]}/{N_PEER}" in out
    rec = RunFolder(root).stage_record("compare")
    assert rec["config"]["peer_dir"] == str(moved)


def test_missing_peer_dir_is_one_line_and_writes_nothing(tmp_path, capsys):
    root = build_run(tmp_path)
    assert main(["compare", "--run", str(root), "--peer", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "peer_dir" in err and len(err.strip().splitlines()) == 1
    assert RunFolder(root).stage_record("compare") is None
    with pytest.raises(UserError, match="peer_dir"):
        compare_run(root, CompareConfig(png=False, peer_dir="nope"))


def test_no_peers_keeps_the_stage_config(tmp_path):
    root = build_run(tmp_path)
    shutil_peer = root / "peer"
    import shutil

    shutil.rmtree(shutil_peer)
    res = compare_run(root, CompareConfig(png=False))
    assert res["peers"] == {}
    cfg = RunFolder(root).stage_record("compare")["config"]
    assert "peer_dir" not in cfg and "peer_weights_hashes" not in cfg
