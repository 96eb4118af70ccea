"""import-peer: the study authors' SAE format -> our SAELens Scalar SAE, equal to their formula."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import llmjp_ckpt  # noqa: F401  registers the architecture
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.hub.peer import import_peer

D, N, K = 16, 64, 4


def peer_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    dec = torch.randn(D, N, generator=g)
    dec = dec / dec.norm(dim=0, keepdim=True)
    return {"encoder.weight": torch.randn(N, D, generator=g) * 0.5,
            "encoder.bias": torch.randn(N, generator=g) * 0.1,
            "decoder.weight": dec, "b_dec": torch.randn(D, generator=g) * 0.05}


def write_peer(folder: Path, cfg: dict | None = None, weights: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(
        cfg or {"model_type": "topk_sae", "d_in": D, "num_latents": N, "k": K}))
    save_file(weights or peer_weights(), str(folder / "model.safetensors"))
    return folder


def peer_formula(x: torch.Tensor, w: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' forward pass written directly: unit-norm input, TopK(ReLU(enc(x - b_dec)))."""
    xn = x / x.norm(dim=-1, keepdim=True)
    pre = torch.relu((xn - w["b_dec"]) @ w["encoder.weight"].T + w["encoder.bias"])
    top = pre.topk(K, dim=-1)
    z = torch.zeros_like(pre).scatter(-1, top.indices, top.values)
    return z, z @ w["decoder.weight"].T + w["b_dec"]


def test_imported_sae_equals_the_authors_formula(tmp_path: Path) -> None:
    from sae_lens import SAE

    w = peer_weights()
    out = import_peer(str(write_peer(tmp_path / "peer")), tmp_path / "ours")
    sae = SAE.load_from_disk(str(out))
    x = torch.randn(200, D) * 7.0  # any scale: both normalise each token
    z_ref, rec_ref = peer_formula(x, w)
    _, rec, z = sae.reconstruct_normalised(x)
    assert torch.allclose(z, z_ref, atol=1e-5)
    assert torch.allclose(rec, rec_ref, atol=1e-5)
    assert (z != 0).sum(-1).max() <= K
    assert json.loads((out / "cfg.json").read_text())["metadata"]["hook_name"] == "blocks.11.hook_resid_post"


@pytest.mark.parametrize("case, expected", [
    ("shape", "encoder.weight has shape"),
    ("pickle", "only pickle weights"),
    ("no_config", "config.json: not found"),
    ("contradiction", "k 100 exceeds num_latents"),
    ("missing_key", "weights lack b_dec"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, case: str, expected: str) -> None:
    src = tmp_path / "peer"
    w = peer_weights()
    if case == "shape":
        write_peer(src, weights={**w, "encoder.weight": torch.zeros(N, D + 1)})
    elif case == "pickle":
        src.mkdir()
        (src / "config.json").write_text(json.dumps({"d_in": D, "num_latents": N, "k": K}))
        (src / "pytorch_model.bin").write_bytes(b"not loaded")
    elif case == "no_config":
        write_peer(src)
        (src / "config.json").unlink()
    elif case == "contradiction":
        write_peer(src, cfg={"d_in": D, "num_latents": N, "k": 100})
    else:
        write_peer(src, weights={k: v for k, v in w.items() if k != "b_dec"})
    with pytest.raises(UserError, match=expected):
        import_peer(str(src), tmp_path / "ours")
    assert not (tmp_path / "ours").exists()


def test_cli_import_peer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from llmjp_ckpt.cli import main  # in-process: a subprocess re-imports torch and TransformerLens

    src = write_peer(tmp_path / "peer")
    assert main(["import-peer", str(src), "--out", str(tmp_path / "ours")]) == 0
    assert (tmp_path / "ours" / "sae_weights.safetensors").is_file()
    capsys.readouterr()
    assert main(["import-peer", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_hub_repo_from_the_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub repo id resolves offline from a hub cache (the layout huggingface_hub writes)."""
    repo = "llm-jp/llm-jp-3-1.8b-sae-l12-k32-16x-c1000"
    commit = "a" * 40
    cache = tmp_path / "hub"
    snap = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / commit
    write_peer(snap)
    refs = cache / f"models--{repo.replace('/', '--')}" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    out = import_peer(repo, tmp_path / "ours")
    assert json.loads((out / "peer.json").read_text())["source"] == repo
