"""The demo's toy stage: a run folder never mixes two toy worlds (fast; no toy is built)."""

from __future__ import annotations

import dataclasses

import pytest

from llmjp_ckpt.demo import TOY_STAGE, ensure_toy, toy_stage_config
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.runfolder import RunFolder
from llmjp_ckpt.toy import quick_config
from llmjp_ckpt.toy.config import world_fingerprint


def test_world_fingerprint_follows_the_config_and_the_generator(monkeypatch):
    from llmjp_ckpt.toy import corpus

    base = quick_config()
    before = world_fingerprint(base)
    assert before == world_fingerprint(quick_config()) == toy_stage_config(True, 0)[0]["world"]
    other = dataclasses.replace(base, corpus=dataclasses.replace(base.corpus, tag_share=0.2))
    assert world_fingerprint(other) != before
    monkeypatch.setattr(corpus, "FRAME_WEIGHTS", (1,) * len(corpus.FRAMES))  # code, not config
    assert world_fingerprint(base) != before


def test_a_folder_built_on_another_world_is_refused_in_one_line(tmp_path):
    run = RunFolder(tmp_path)
    run.record(TOY_STAGE, {"quick": True, "seed": 0}, "done")  # a toy of an older version
    run.record("data", {"any": 1}, "done")
    with pytest.raises(UserError, match=r"data stages were built on another toy world.*new --out") as exc:
        ensure_toy(run, quick=True, seed=0)
    assert "\n" not in str(exc.value)
    assert run.stage_record(TOY_STAGE)["config"] == {"quick": True, "seed": 0}  # nothing rewritten
    run.record(TOY_STAGE, toy_stage_config(True, 0)[0], "done")
    with pytest.raises(UserError):  # another seed in the same folder: refused as well
        ensure_toy(run, quick=True, seed=1)


def test_the_same_world_is_skipped(tmp_path):
    run = RunFolder(tmp_path)
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "toy.json").write_text("{}")
    run.record(TOY_STAGE, toy_stage_config(True, 0)[0], "done")
    run.record("data", {"any": 1}, "done")
    assert ensure_toy(run, quick=True, seed=0) == tmp_path / "toy"
