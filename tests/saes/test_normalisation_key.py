"""cfg.json spells the mode ``normalisation``; SAEs saved with the old ``token_norm`` key load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sae_lens import SAE

from llmjp_ckpt.saes.normalisation import (
    TokenNormTopKSAE,
    TokenNormTopKSAEConfig,
    TokenNormTopKTrainingSAE,
    TokenNormTopKTrainingSAEConfig,
    mode_of,
    with_current_key,
)


def _saved(tmp_path: Path, mode: str) -> tuple[TokenNormTopKSAE, Path]:
    torch.manual_seed(0)
    sae = TokenNormTopKSAE(TokenNormTopKSAEConfig(d_in=8, d_sae=16, k=2, normalisation=mode))
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_()
    folder = tmp_path / mode
    sae.save_model(folder)
    return sae, folder


@pytest.mark.parametrize("mode", ["scalar", "standardization"])
def test_cfg_json_key_is_normalisation_and_old_key_still_loads(tmp_path: Path, mode: str) -> None:
    sae, folder = _saved(tmp_path, mode)
    cfg_path = folder / "cfg.json"
    cfg = json.loads(cfg_path.read_text())
    assert cfg["normalisation"] == mode and "token_norm" not in cfg
    # an SAE saved before the rename: the same file with the old key
    cfg["token_norm"] = cfg.pop("normalisation")
    cfg_path.write_text(json.dumps(cfg))
    old = SAE.load_from_disk(folder)
    assert isinstance(old, TokenNormTopKSAE) and old.cfg.normalisation == mode
    x = torch.randn(5, 8) * 3 + 1
    torch.testing.assert_close(old(x), sae(x))  # same mode, same reconstruction


def test_trained_sae_cfg_json_has_only_the_new_key(tmp_path: Path) -> None:
    cfg = TokenNormTopKTrainingSAEConfig(d_in=8, d_sae=16, k=2, normalisation="scalar")
    assert "token_norm" not in cfg.to_dict()
    _, cfg_path = TokenNormTopKTrainingSAE(cfg).save_inference_model(tmp_path / "t")
    saved = json.loads(cfg_path.read_text())
    assert saved["normalisation"] == "scalar" and "token_norm" not in saved
    assert SAE.load_from_disk(tmp_path / "t").cfg.normalisation == "scalar"


def test_training_config_reads_the_old_key() -> None:
    d = {"d_in": 4, "d_sae": 8, "k": 2, "token_norm": "scalar", "architecture": "topk_token_norm"}
    assert TokenNormTopKTrainingSAEConfig.from_dict(d).normalisation == "scalar"
    d["normalisation"] = "standardization"  # the new key wins when both are present
    assert TokenNormTopKTrainingSAEConfig.from_dict(d).normalisation == "standardization"


def test_mode_of_and_with_current_key() -> None:
    assert mode_of({"normalisation": "scalar"}) == "scalar"
    assert mode_of({"token_norm": "standardization"}) == "standardization"
    assert mode_of({"normalize_activations": "layer_norm"}) == "layer_norm"
    assert mode_of({}) == "none"
    assert with_current_key({"token_norm": "scalar", "k": 2}) == {"normalisation": "scalar", "k": 2}
