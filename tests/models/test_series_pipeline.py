"""Train → features → compare → site on two public-style series, offline: a tiny GPT-NeoX series
with a byte-level BPE tokenizer (``iter_*`` folders under a registered name, TransformerLens'
own conversion) and a Llama-shaped hub-revision series read from a local hub cache (steps parsed
from branch names). Each runs in a subprocess so the hub cache and offline mode are set before
``huggingface_hub`` is imported."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import build_corpus, data_config, train_config
from tests.series_builders import build_bpe_tokenizer, build_neox_series, put_in_hub_cache, write_registry

pytestmark = pytest.mark.slow

PIPELINE = """
import sys
from llmjp_ckpt.cli import main
cfg, run = sys.argv[1], sys.argv[2]
for argv in (["prepare-data", "--config", cfg + "/data.yaml"], ["train", "--config", cfg + "/train.yaml"],
             ["features", "--config", cfg + "/features.yaml"], ["compare", "--config", cfg + "/compare.yaml"],
             ["site", "--config", cfg + "/site.yaml"]):
    rc = main([*argv, "--run", run])
    if rc:
        sys.exit(f"{argv[0]} exited {rc}")
"""


def _configs(out: Path, corpus: Path, tokenizer: Path, source: str, steps: list[int], pages: bool) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    train = train_config(Path(source), steps, hook_layer=1,
                         saes={"expansion": [4], "k": [4], "lr": [3e-3], "normalisation": ["scalar"]})
    files = {"data.yaml": data_config(corpus, tokenizer), "train.yaml": train,
             "features.yaml": {"png": False, "max_windows": 48, "norm_study": False},
             "compare.yaml": {"png": False}, "site.yaml": {"feature_pages": pages, "max_feature_pages": 1}}
    for name, cfg in files.items():
        (out / name).write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return out


def _run_pipeline(cfg: Path, run: Path, env: dict[str, str]) -> None:
    out = subprocess.run([sys.executable, "-c", PIPELINE, str(cfg), str(run)], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=1200, check=False,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-3000:]


def _assert_whole_run(run: Path, steps: list[int]) -> None:
    from llmjp_ckpt.runfolder import sae_folders

    assert sorted({s for s, _, _ in sae_folders(run)}) == steps
    manifest = json.loads((run / "manifest.json").read_text())
    for stage in ("data", "train", "features", "compare", "site"):
        assert manifest["stages"][stage]["status"] == "done", stage
    transitions = json.loads((run / "analysis" / "transitions.json").read_text())
    assert transitions, "no transitions"
    pages = [p for p in run.rglob("*.html")]
    assert any(p.name == "index.html" for p in pages)
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "Ġ" not in text and "ãģ" not in text, page  # byte-level alphabet never shown


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_corpus(tmp_path_factory.mktemp("corpus") / "c", n_docs={"ja": 120, "en": 120})


def test_neox_series_with_byte_bpe_train_to_site(corpus, tmp_path) -> None:
    tok = build_bpe_tokenizer(tmp_path / "tokenizer")
    root = build_neox_series(tmp_path / "ckpts", [0, 1, 2], tok)
    reg = write_registry(tmp_path / "r.yaml", [
        {"name": "tiny-neox-series", "steps": "discover", "local_root": str(root)}])
    cfg = _configs(tmp_path / "cfg", corpus, tok, "tiny-neox-series", [0, 1, 2], pages=True)
    _run_pipeline(cfg, tmp_path / "run", {"LLMJP_CKPT_REGISTRY": str(reg)})
    _assert_whole_run(tmp_path / "run", [0, 1, 2])
    dashboards = list((tmp_path / "run" / "dashboards" / "features").rglob("feature_*.html"))
    assert len(dashboards) == 3  # one sae-dashboard page per SAE, Japanese shown as text
    assert all(re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", p.read_text(encoding="utf-8")) for p in dashboards)


def test_hub_revision_series_from_a_local_cache_train_to_site(corpus, tmp_path) -> None:
    from tests.model_builders import build_checkpoints, build_tokenizer

    tok_dir = tmp_path / "tok"
    ckpts = build_checkpoints(tmp_path / "ckpts", [10, 20], build_tokenizer(tok_dir))
    cache = tmp_path / "hub"
    put_in_hub_cache(cache, "org/tiny-series", {
        "stage1-step10-tokens1B": ckpts / "iter_0000010", "stage1-step20-tokens2B": ckpts / "iter_0000020",
        "main": ckpts / "iter_0000020"})
    reg = write_registry(tmp_path / "r.yaml", [
        {"name": "org/tiny-series", "steps": "hub_refs", "hub_repo": "org/tiny-series",
         "revision_regex": r"stage1-step(?P<step>\d+)-tokens\d+B"}])
    cfg = _configs(tmp_path / "cfg", corpus, ckpts / "iter_0000010", "org/tiny-series", [10, 20], pages=False)
    _run_pipeline(cfg, tmp_path / "run", {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
                                          "TRANSFORMERS_OFFLINE": "1", "LLMJP_CKPT_REGISTRY": str(reg)})
    _assert_whole_run(tmp_path / "run", [10, 20])
