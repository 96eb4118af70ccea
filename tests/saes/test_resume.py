"""Exact resume (saes.resume): the stream equals SAELens' and a resumed run is bit-identical."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from sae_lens.training.mixing_buffer import multi_hook_concat_split_iter

from llmjp_ckpt.saes import resume, training
from tests.helpers import train_config
from tests.saes.test_seeds import world  # noqa: F401  the module-scoped tiny world

HOOKS = ["h1", "h2"]


class FakeStore:
    """The store attributes ExactStream reads; LM batch i is a function of i alone."""

    def __init__(self) -> None:
        self._hook_names = HOOKS
        self.n_batches_in_buffer, self.training_context_size = 5, 8
        self.train_batch_size_tokens = 12
        self.activations_mixing_fraction = 0.5
        self.n_dataset_processed = 0
        self.device = torch.device("cpu")

    def _iterate_filtered_multi_hook_activations(self):
        while True:
            g = torch.Generator().manual_seed(self.n_dataset_processed)
            self.n_dataset_processed += 1
            yield {"h1": torch.randn(7, 3, generator=g), "h2": torch.randn(7, 2, generator=g)}


def test_exact_stream_equals_saelens_stream():
    torch.manual_seed(3)
    st = FakeStore()
    ref = multi_hook_concat_split_iter(st.n_batches_in_buffer * st.training_context_size,
                                       st.train_batch_size_tokens,
                                       st._iterate_filtered_multi_hook_activations(), HOOKS, 0.5)
    want = [next(ref) for _ in range(30)]
    torch.manual_seed(3)
    got = resume.ExactStream(FakeStore())
    for w in want:
        g = next(got)
        assert all(torch.equal(w[h], g[h]) for h in HOOKS)


def test_state_round_trip_continues_the_same_stream():
    torch.manual_seed(5)
    a = resume.ExactStream(FakeStore())
    for _ in range(7):
        next(a)
    state = resume.ExactStream.state_dict(a)
    want = [next(a) for _ in range(20)]
    torch.manual_seed(99)  # the state restores the random state too
    store = FakeStore()
    src = store._iterate_filtered_multi_hook_activations()
    for _ in range(state["n_dataset_processed"]):  # SAELens' fast-forward
        next(src)
    b = resume.ExactStream(store)
    b._source = src
    b.load_state_dict(state, "cpu")
    for w in want:
        g = next(b)
        assert all(torch.equal(w[h], g[h]) for h in HOOKS)


def _cfg(world):  # noqa: F811
    return train_config(world["ckpts"], [10], saes={"normalisation": ["scalar"]},
                        runner={"n_checkpoints": 2}, metrics={"max_windows": 4, "ce": False})


def _run(world, root: Path) -> Path:  # noqa: F811
    run = root / "run"
    shutil.copytree(world["run"] / "data", run / "data")
    return run


def test_killed_run_resumes_bit_identical(world, tmp_path, monkeypatch):  # noqa: F811
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        full = training.train_run(_cfg(world), _run(world, tmp_path / "full"))[0]
        run = _run(world, tmp_path / "killed")
        real = training.finite_batches

        def dies(batches, where):
            for i, b in enumerate(real(batches, where)):
                if i == 8:  # past the first checkpoint (1,024 samples = step 5 of 12)
                    raise RuntimeError("killed")
                yield b

        monkeypatch.setattr(training, "finite_batches", dies)
        with pytest.raises(RuntimeError, match="killed"):
            training.train_run(_cfg(world), run)
        states = list((run / "saes" / "_work").rglob(resume.STATE_FILE))
        assert states, "the periodic checkpoint holds the stream state"
        monkeypatch.setattr(training, "finite_batches", real)
        resumed = training.train_run(_cfg(world), run)[0]
    finally:
        torch.set_num_threads(n)
    import json

    assert json.loads((resumed / "metrics.json").read_text())["resumed_from"]
    for name in ("sae_weights.safetensors", "sparsity.safetensors"):
        assert (resumed / name).read_bytes() == (full / name).read_bytes(), name
