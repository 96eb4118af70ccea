"""The site loads each checkpoint's model once for all its SAEs (a counting model loader)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llmjp_ckpt.site.pages import last_model_cache


def test_site_loads_each_checkpoint_once_for_all_its_saes(tmp_path_factory, tmp_path: Path) -> None:
    from llmjp_ckpt.site import assets, build_site
    from tests.site_builders import SAE_IDS, STEPS, built_site

    if assets.d3_js() is None:
        pytest.skip("d3 not installed (make setup): no sae-dashboard pages, no model loads")
    run, tt, model, cfg, _ = built_site(tmp_path_factory.getbasetemp())
    run = Path(shutil.copytree(run, tmp_path / "run"))
    loads: list[int] = []

    def loader(step: int):
        loads.append(step)
        return model

    index = build_site(run, cfg, model_loader=loader, token_text=tt, force=True)
    pages = {p.parent.relative_to(index.parent / "features").as_posix()
             for p in (index.parent / "features").rglob("feature_*.html")}
    # every SAE of every checkpoint got pages, from one load per checkpoint
    assert pages == {f"iter_{s:07d}/{sid}" for s in STEPS for sid in SAE_IDS}
    assert sorted(loads) == sorted(STEPS)


def test_last_model_cache_shares_a_load_and_holds_one_model() -> None:
    loads: list[int] = []

    def loader(step: int) -> list[int]:
        loads.append(step)
        return [step]

    load = last_model_cache(loader)
    first = load(10)  # e.g. the tokenizer fallback
    assert load(10) is first and loads == [10]  # then that checkpoint's pages: no second load
    assert load(100) == [100] and loads == [10, 100]
    assert load(10) is not first and loads == [10, 100, 10]  # only the last model is held
