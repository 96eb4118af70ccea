"""Neuronpedia export through sae-dashboard's runner: readable Japanese, payloads kept as data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.feature_builders import build_model, build_sae
from tests.site_builders import (
    JA,
    PAYLOAD_PIECES,
    WINDOW,
    build_sp_tokenizer,
    build_windows_from_text,
)


def _strings(node: Any) -> list[str]:
    """Every string value (and key) in parsed JSON."""
    if isinstance(node, dict):
        return [*node.keys(), *(s for v in node.values() for s in _strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    import datasets
    from transformers import LlamaTokenizer

    from llmjp_ckpt.hub.neuronpedia import NeuronpediaExportConfig, export_neuronpedia
    from llmjp_ckpt.tokens import TokenText

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("np")
    run = root / "run"
    sp_model = build_sp_tokenizer(root / "tok")
    tt = TokenText.from_sentencepiece(sp_model)
    toks = build_windows_from_text(sp_model, n=24)
    model = build_model(d_vocab=((len(tt) + 15) // 16) * 16 + 16, n_ctx=WINDOW)
    model.tokenizer = LlamaTokenizer(vocab_file=str(sp_model), legacy=False)  # as load_model's
    test_split = datasets.Dataset.from_dict({"input_ids": toks.tolist()})
    test_split.save_to_disk(str(run / "data" / "test"))
    for j, sid in enumerate(("none", "scalar")):
        build_sae(d_sae=16, k=4, seed=j, model_name="tiny").save_model(
            str(run / "saes" / "iter_0000010" / sid))
    cfg = NeuronpediaExportConfig(n_features_at_a_time=8)
    out = export_neuronpedia(run, cfg=cfg, model_loader=lambda step: model, token_text=tt)
    assert model.tokenizer.pad_token is None  # the stand-in pad id was only for the run
    return run, out, tt


def test_writes_sae_dashboard_batches(exported: tuple[Path, Path, Any]) -> None:
    _, out, _ = exported
    for sid in ("none", "scalar"):
        folder = out / "iter_0000010" / sid
        batches = sorted(folder.glob("batch-*.json"))
        assert [b.name for b in batches] == ["batch-0.json", "batch-1.json"]
        feats = [f for b in batches for f in json.loads(b.read_text(encoding="utf-8"))["features"]]
        assert sorted(f["feature_index"] for f in feats) == list(range(16))
        assert json.loads((folder / "skipped_indexes.json").read_text())["skipped_indexes"] == []
        settings = json.loads((folder / "run_settings.json").read_text())
        assert settings["outputs_dir"] == str(folder)
    assert not list(out.rglob(".tmp-*"))


def test_token_text_is_readable_japanese(exported: tuple[Path, Path, Any]) -> None:
    _, out, _ = exported
    strings: list[str] = []
    n_examples = 0
    for path in out.rglob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        strings += _strings(data)
        for feat in data.get("features", []):
            for act in feat["activations"]:
                n_examples += 1
                assert len(act["tokens"]) == len(act["values"])
    assert n_examples > 0
    text = "".join(strings)
    assert "\u2581" not in text and "<0x" not in text
    assert any(word in text for s in JA for word in (s[:2], s[-3:-1]))
    assert "鰻" in text  # byte-fallback pieces merged into the character


def test_payloads_only_as_json_strings(exported: tuple[Path, Path, Any]) -> None:
    _, out, _ = exported
    seen = 0
    for path in out.rglob("batch-*.json"):
        raw = path.read_text(encoding="utf-8")
        strings = _strings(json.loads(raw))
        for piece in PAYLOAD_PIECES:
            in_strings = sum(s.count(piece) for s in strings)
            encoded = json.dumps(piece)[1:-1]  # as it appears inside a JSON string
            assert raw.count(encoded) == in_strings  # nowhere but inside string data
            seen += in_strings
    assert seen > 0


def test_cli_without_saes_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from llmjp_ckpt.cli import main

    assert main(["export", "neuronpedia", "--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "llmjp-ckpt train" in err
