"""Public checkpoint series, offline: a tiny GPT-NeoX series in iter_* folders through
TransformerLens' own conversion, Pythia through TransformerLens' own ``checkpoint_value`` from a
local hub cache, and a hub-revision family whose steps are parsed from branch names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.series_builders import (
    build_bpe_tokenizer,
    build_neox_series,
    put_in_hub_cache,
    snapshot,
    write_registry,
)

TEXT = "猫の色は黒です。 The cat is black."


@pytest.fixture(scope="module")
def neox(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("neox")
    tok = build_bpe_tokenizer(tmp / "tokenizer")
    return build_neox_series(tmp / "ckpts", [0, 1, 2], tok), tok


def _hf_logits(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(str(folder)).eval()(ids).logits


def test_local_neox_series_loads_through_transformer_lens(neox, tmp_path, monkeypatch) -> None:
    from llmjp_ckpt.models import adapter
    from llmjp_ckpt.tokens import TokenText

    root, _ = neox
    model = adapter.load_model(root / "iter_0000002")
    assert model.cfg.original_architecture == "GPTNeoXForCausalLM"
    ids = model.to_tokens(TEXT)
    assert int(ids[0, 0]) == 1
    with torch.no_grad():
        assert (model(ids) - _hf_logits(root / "iter_0000002", ids)).abs().max().item() <= 1e-4
    assert TokenText.from_hf(model.tokenizer).decode(ids[0].tolist()) == TEXT
    assert model.cfg.tokenizer_name == str((root / "iter_0000002").resolve())
    # the series under a registered name, steps discovered from the folders
    monkeypatch.setenv("LLMJP_CKPT_REGISTRY", str(write_registry(tmp_path / "r.yaml", [
        {"name": "tiny-neox-series", "steps": "discover", "local_root": str(root)}])))
    adapter.registry.cache_clear()
    try:
        assert adapter.available_steps(adapter.registry()["tiny-neox-series"]) == [0, 1, 2]
        one = adapter.load_model("tiny-neox-series", 1)
        with torch.no_grad():
            assert (one(ids) - _hf_logits(root / "iter_0000001", ids)).abs().max().item() <= 1e-4
            assert not torch.allclose(one(ids), model(ids))
    finally:
        adapter.registry.cache_clear()


@pytest.mark.parametrize(("changes", "needle"), [
    ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, "not a GPT2LMHeadModel config"),
    ({"hidden_size": 64}, "weights do not match"),
    ({"model_type": "mamba", "architectures": ["MambaForCausalLM"]}, "not supported"),
])
def test_bad_non_llama_folders_are_one_line(neox, tmp_path, capsys, changes, needle) -> None:
    import shutil

    from llmjp_ckpt.cli import main

    root, _ = neox
    bad = tmp_path / "bad"
    shutil.copytree(root / "iter_0000000", bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg.update(changes)
    (bad / "config.json").write_text(json.dumps(cfg))
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def _run(script: str, cache: Path, registry: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "LLMJP_CKPT_REGISTRY": str(registry or "")}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, check=False,
                          text=True, timeout=600, cwd=Path(__file__).resolve().parents[2])


def _result_lines(stdout: str) -> list[str]:
    """The JSON result line and the listing after it (TransformerLens prints a line before)."""
    lines = stdout.strip().splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith("{")):]


CHECK = """
import json, sys, torch
import llmjp_ckpt
from llmjp_ckpt.cli import main
from transformers import AutoModelForCausalLM
name, step, snap = sys.argv[1], int(sys.argv[2]), sys.argv[3]
model = llmjp_ckpt.load_model(name, step)
ids = model.to_tokens("猫の色は黒です。 The cat is black.")
with torch.no_grad():
    hf = AutoModelForCausalLM.from_pretrained(snap).eval()(ids).logits
    diff = (model(ids) - hf).abs().max().item()
print(json.dumps({"diff": diff, "arch": model.cfg.original_architecture,
                  "from_checkpoint": model.cfg.from_checkpoint}))
sys.exit(main(["checkpoints", "--model", name]))
"""


def test_pythia_through_transformer_lens_checkpoint_value(neox, tmp_path) -> None:
    root, _ = neox
    cache = tmp_path / "hub"
    put_in_hub_cache(cache, "EleutherAI/pythia-14m", {
        "step1": root / "iter_0000001", "step2": root / "iter_0000002",
        "main": root / "iter_0000002"})
    snap = snapshot(cache, "EleutherAI/pythia-14m", "step1")
    out = _run(CHECK.replace("sys.argv[1], int(sys.argv[2]), sys.argv[3]",
                             f"'EleutherAI/pythia-14m', 1, {str(snap)!r}"), cache)
    assert out.returncode == 0, out.stderr[-2000:]
    first, *listing = _result_lines(out.stdout)
    res = json.loads(first)
    assert res["diff"] <= 1e-4 and res["arch"] == "GPTNeoXForCausalLM" and res["from_checkpoint"]
    assert "loader: transformer_lens" in listing[0]
    rows = {line.split()[0]: line for line in listing[3:]}
    assert len(rows) == 154  # TransformerLens' own Pythia schedule
    assert "step1  (in the local hub cache)" in rows["1"]
    assert "in the local hub cache" not in rows["4"]


def test_hub_revision_family_from_a_local_cache(tmp_path) -> None:
    from tests.model_builders import build_checkpoints, build_tokenizer

    ckpts = build_checkpoints(tmp_path / "ckpts", [10, 20], build_tokenizer(tmp_path / "tok"))
    cache = tmp_path / "hub"
    put_in_hub_cache(cache, "org/tiny-series", {
        "stage1-step10-tokens1B": ckpts / "iter_0000010",
        "stage1-step20-tokens2B": ckpts / "iter_0000020",
        "stage2-ingredient1-step5-tokens9B": ckpts / "iter_0000010",
        "main": ckpts / "iter_0000020"})
    regex = r"(?:stage1-)?step(?P<step>\d+)-tokens\d+B"
    reg = write_registry(tmp_path / "r.yaml", [
        {"name": "org/tiny-series", "steps": "hub_refs", "hub_repo": "org/tiny-series",
         "revision_regex": regex},
        {"name": "org/no-match", "steps": "hub_refs", "hub_repo": "org/tiny-series",
         "revision_regex": r"checkpoint-(\d+)"}])
    snap = snapshot(cache, "org/tiny-series", "stage1-step20-tokens2B")
    out = _run(CHECK.replace("sys.argv[1], int(sys.argv[2]), sys.argv[3]",
                             f"'org/tiny-series', 20, {str(snap)!r}"), cache, reg)
    assert out.returncode == 0, out.stderr[-2000:]
    first, *listing = _result_lines(out.stdout)
    assert json.loads(first)["diff"] <= 1e-4
    assert "local hub cache" in listing[0] and "offline" in listing[0]
    steps = [line.split()[0] for line in listing[3:]]
    assert steps == ["10", "20"]  # the stage-2 branch does not match
    assert "stage1-step20-tokens2B  (in the local hub cache)" in listing[-1]
    bad = _run("import sys; from llmjp_ckpt.cli import main; "
               "sys.exit(main(['checkpoints', '--model', 'org/no-match']))", cache, reg)
    err = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(err) == 1 and "matches none" in err[0], bad.stderr
    missing = _run("import sys; from llmjp_ckpt.cli import main; "
                   "sys.exit(main(['inspect', 'org/tiny-series', '--step', '15']))", cache, reg)
    err = missing.stderr.strip().splitlines()
    assert missing.returncode == 2 and len(err) == 1 and "steps are [10, 20]" in err[0], err
