"""The upload's model card and registry entry, read back by huggingface_hub and SAELens."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.feature_builders import build_run

REPO = "someone/llmjp-ckpt-saes"


@pytest.fixture(scope="module")
def saes(tmp_path_factory: pytest.TempPathFactory) -> list:
    from llmjp_ckpt.hub.upload import collect_saes

    return collect_saes(build_run(tmp_path_factory.mktemp("rel") / "run", steps=(10, 100)))


def test_model_card_parses_with_huggingface_hub(saes: list) -> None:
    from huggingface_hub import ModelCard

    from llmjp_ckpt.hub.upload import model_card

    card = ModelCard(model_card(saes, REPO))
    assert card.data.library_name == "saelens"
    assert card.data.tags == ["sparse-autoencoder", "llm-jp"]
    assert card.text.lstrip().startswith("# Sparse autoencoders")
    assert "| explained_variance" in card.text


def test_registry_entry_reads_with_saelens(saes: list, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from sae_lens.loading import pretrained_saes_directory as psd

    from llmjp_ckpt.hub.upload import registry_entry, write_registry

    write_registry(registry_entry(saes, REPO), tmp_path / "pretrained_saes.yaml")
    # SAELens reads only its packaged file: point its resource lookup at ours (uncached call)
    monkeypatch.setattr(psd, "files", lambda package: tmp_path)
    lookup = psd.get_pretrained_saes_directory.__wrapped__()[REPO]
    ids = [f"{s.folder.parent.name}/{s.sae_id}" for s in saes]
    assert lookup.repo_id == REPO and lookup.model == "tiny" and lookup.conversion_func is None
    assert lookup.saes_map == {i: i for i in ids}
    for s, i in zip(saes, ids, strict=True):
        if "explained_variance" in s.metrics:
            expected = s.metrics["explained_variance"]
            assert lookup.expected_var_explained[i] == pytest.approx(expected)
