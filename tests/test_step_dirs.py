"""Step-folder names: one builder (``step_dir``) and one parser (``parse_step_dir``)."""

from __future__ import annotations

import pytest

from llmjp_ckpt.runfolder import parse_step_dir, step_dir


@pytest.mark.parametrize("step", [0, 10, 1000, 988240, 12345678])
def test_parse_inverts_step_dir(step: int) -> None:
    assert parse_step_dir(step_dir(step)) == step


@pytest.mark.parametrize("name", ["iter_10", "iter_000001x", "iter_", "ITER_0000010", "_work",
                                  "iter_0000010.tmp", ".tmp-iter_0000010", "0000010"])
def test_parse_refuses_other_names(name: str) -> None:
    assert parse_step_dir(name) is None
