"""The norm study: token types, per-layer norms against a direct computation, dead latents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llmjp_ckpt.errors import UserError
from llmjp_ckpt.features import normstudy as ns
from tests.feature_builders import build_model, build_run, build_token_text, build_windows


@pytest.mark.parametrize("text,expected", [
    ("\n", "newline"), ("<0x0A>", "newline"), (" The", "English"), ("京都", "Japanese"),
    ("です", "Japanese"), ("。", "punctuation"), (" ,", "punctuation"), ("<0xE3>", "other"),
    (" 42", "other"), (" ", "other"), ("<script>", "English"), ("\x07", "other"),
])
def test_token_type_of(text: str, expected: str) -> None:
    assert ns.token_type_of(text) == expected


def test_layer_norms_by_type_match_direct_computation() -> None:
    model, toks, tt = build_model(), build_windows(n=6), build_token_text()
    toks[:, 1] = tt.pieces.index("京都")
    types = ns.token_types(toks, tt)
    assert (types[:, 0] == ns.TOKEN_TYPES.index("BOS")).all()
    assert types[toks == tt.pieces.index("京都")].unique().tolist() == [ns.TOKEN_TYPES.index("Japanese")]
    norms = ns.layer_norms(model, toks, batch_size=4)
    assert norms.shape == (2, 6, 17)
    _, cache = model.run_with_cache(toks)
    direct = cache["blocks.1.hook_resid_post"].norm(dim=-1)
    assert torch.allclose(norms[1], direct, atol=1e-5)
    rows = ns.norm_rows(norms, types, step=10)
    jap = next(r for r in rows if r["layer"] == 2 and r["token_type"] == "Japanese")
    mask = types == ns.TOKEN_TYPES.index("Japanese")
    assert jap["count"] == int(mask.sum()) and jap["mean"] == pytest.approx(float(direct[mask].mean()), rel=1e-5)
    assert sum(r["count"] for r in rows if r["layer"] == 1) == toks.numel()


def test_dead_latents_per_mode_and_files(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run", steps=(10,))
    dead = ns.dead_rows(run)
    assert {(r["normalization"], r["dead"]) for r in dead} == {("none", 3), ("scalar", 4)}
    figs = ns.write_norm_study(run, [], png=False)
    assert {p.name for p in figs} == {"norms_by_token_type.html", "dead_latents_by_normalization.html"}
    saved = json.loads((run / "analysis" / "norms.json").read_text(encoding="utf-8"))
    assert saved["dead_latents"] == dead and all(r["eval_tokens"] == 1000 for r in dead)
    # only the firing counts decide: a sparsity file saying "all dead" changes nothing
    from safetensors.torch import save_file

    save_file({"sparsity": torch.full((64,), -10.0)},
              str(run / "saes" / "iter_0000010" / "none" / "sparsity.safetensors"))
    assert ns.dead_rows(run) == dead
    (run / "saes" / "iter_0000010" / "none" / "firing_counts.safetensors").unlink()
    with pytest.raises(UserError, match=r"none/firing_counts\.safetensors: not found"):
        ns.dead_rows(run)
