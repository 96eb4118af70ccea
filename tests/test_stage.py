"""The one stage skeleton (``RunFolder.stage``): skip, running, done, failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmjp_ckpt.runfolder import RunFolder


def test_stage_records_done_with_info_then_skips(tmp_path: Path) -> None:
    rf = RunFolder(tmp_path)
    out = tmp_path / "out.txt"
    with rf.stage("s", {"a": 1}, outputs=[out], steps=[1]) as st:
        assert not st.skipped
        assert rf.stage_record("s")["status"] == "running"
        out.write_text("x")
        st.info["n"] = 3
    rec = rf.stage_record("s")
    assert (rec["status"], rec["steps"], rec["n"], rec["config"]) == ("done", [1], 3, {"a": 1})
    with rf.stage("s", {"a": 1}, outputs=[out]) as st:
        assert st.skipped
    assert rf.stage_record("s")["n"] == 3  # a skip leaves the record alone


@pytest.mark.parametrize("change", ["config", "missing_output", "force"])
def test_stage_reruns_when_config_output_or_force_changes(tmp_path: Path, change: str) -> None:
    rf = RunFolder(tmp_path)
    out = tmp_path / "out.txt"
    with rf.stage("s", {"a": 1}, outputs=[out]):
        out.write_text("x")
    cfg = {"a": 2} if change == "config" else {"a": 1}
    if change == "missing_output":
        out.unlink()
    with rf.stage("s", cfg, outputs=[out], force=change == "force") as st:
        assert not st.skipped


def test_stage_failure_is_recorded_with_the_error_line(tmp_path: Path) -> None:
    rf = RunFolder(tmp_path)
    with pytest.raises(ValueError), rf.stage("s", {"a": 1}):
        raise ValueError("bad value\nsecond line")
    rec = rf.stage_record("s")
    assert (rec["status"], rec["error"]) == ("failed", "bad value")
    with rf.stage("s", {"a": 1}) as st:  # a failed stage is never skipped
        assert not st.skipped
