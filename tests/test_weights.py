"""A truncated or corrupt weights file is one line naming the file and what was expected, in every
stage that reads SAE weights: match / compare (decoders), features, site (load_sae), upload."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from llmjp_ckpt import cli
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.weights import check_sae_weights, load_sae, tensor_shapes
from tests.compare_builders import write_sae

WEIGHTS = "sae_weights.safetensors"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garble(path: Path) -> None:
    path.write_bytes(os.urandom(256))


CORRUPTIONS = {"truncated": _truncate, "garbage": _garble, "empty": lambda p: p.write_bytes(b"")}


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    g = torch.Generator().manual_seed(0)
    a = write_sae(tmp_path / "a", torch.randn(16, 8, generator=g))
    b = write_sae(tmp_path / "b", torch.randn(16, 8, generator=g))
    return a, b


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_match_bad_weights_one_line(pair, tmp_path, capsys, kind):
    a, b = pair
    CORRUPTIONS[kind](b / WEIGHTS)
    code = cli.main(["match", str(a), str(b), "--out", str(tmp_path / "m.csv")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{b / WEIGHTS}: " in err and "expected SAELens' sae_weights.safetensors" in err
    assert not (tmp_path / "m.csv").exists()


def test_good_pair_still_matches(pair, tmp_path):
    a, b = pair
    assert cli.main(["match", str(a), str(b), "--out", str(tmp_path / "m.csv")]) == 0
    assert (tmp_path / "m.csv").read_text(encoding="utf-8").startswith("feature_a")


def test_missing_tensor_and_wrong_shape(tmp_path):
    from safetensors.torch import save_file

    folder = write_sae(tmp_path / "s", torch.randn(16, 8))
    assert check_sae_weights(folder) == {"W_dec": (16, 8), "W_enc": (8, 16), "b_enc": (16,),
                                         "b_dec": (8,)}
    save_file({"W_dec": torch.randn(16, 8)}, str(folder / WEIGHTS))
    with pytest.raises(UserError, match=r"no tensor 'W_enc' \(has \['W_dec'\]\); expected"):
        check_sae_weights(folder)
    save_file({"W_dec": torch.randn(12, 8), "W_enc": torch.randn(8, 12)}, str(folder / WEIGHTS))
    with pytest.raises(UserError,
                       match=r"W_dec has shape \[12, 8\]; expected \[16, 8\] from .*cfg\.json"):
        check_sae_weights(folder)
    with pytest.raises(UserError, match=r"nope\.safetensors: not found; expected x"):
        tensor_shapes(tmp_path / "nope.safetensors", "x")


@pytest.fixture
def run(tmp_path: Path) -> Path:
    from tests.feature_builders import build_run

    return build_run(tmp_path / "run", steps=(10,), sae_ids=("none",), n_windows=8)


def test_features_and_site_loader_bad_weights(run):
    folder = run / "saes" / "iter_0000010" / "none"
    assert load_sae(folder).cfg.d_sae == 64  # the good file loads through SAELens
    _truncate(folder / WEIGHTS)
    with pytest.raises(UserError) as exc:
        load_sae(folder)
    msg = str(exc.value)
    assert msg.startswith(f"{folder / WEIGHTS}: not a readable safetensors file")
    assert "\n" not in msg


def test_features_stage_bad_weights(run):
    from llmjp_ckpt.features.analyze import FeaturesConfig, analyze_run
    from tests.feature_builders import build_model

    folder = run / "saes" / "iter_0000010" / "none"
    _garble(folder / WEIGHTS)
    cfg = FeaturesConfig(n_top=2, batch_size=4, norm_study=False,
                         png=False)
    with pytest.raises(UserError, match=rf"{folder / WEIGHTS}: not a readable safetensors file"):
        analyze_run(run, cfg, model_loader=lambda step: build_model(seed=step))


def test_upload_bad_weights(run):
    from llmjp_ckpt.hub.upload import upload_run

    folder = run / "saes" / "iter_0000010" / "none"
    _truncate(folder / "sparsity.safetensors")
    with pytest.raises(UserError, match=r"sparsity\.safetensors: not a readable safetensors file"):
        upload_run(run, "me/saes", dry_run=True)
    _truncate(folder / WEIGHTS)
    with pytest.raises(UserError, match=rf"{WEIGHTS}: not a readable safetensors file"):
        upload_run(run, "me/saes", dry_run=True)
