"""The top-N store on disk: sparse per-token values and int32 window ids load back exactly;
schema-1 stores still load; a damaged sparse part is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from llmjp_ckpt.errors import UserError
from llmjp_ckpt.features.store import META, TENSORS, FeatureStore, save_store
from llmjp_ckpt.features.topn import TopNConfig, collect_topn


def _result(sparse: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w, t, f = 30, 8, 12
    acts = torch.rand(w, t, f, generator=g) + 0.1  # dense: every token fires
    if sparse:
        acts = acts * (torch.rand(w, t, f, generator=g) < 0.05)
    tokens = torch.cat([torch.arange(w)[:, None], torch.randint(3, 90, (w, t), generator=g)], 1)
    res = collect_topn(tokens, lambda b: {"x": acts[b[:, 0]]}, {"x": f}, TopNConfig(n_top=5, batch_size=7))["x"]
    return res, tokens


@pytest.mark.parametrize("sparse", [True, False])
def test_round_trip_is_exact_and_sparse_is_smaller(tmp_path: Path, sparse: bool) -> None:
    res, tokens = _result(sparse)
    save_store(tmp_path / "s", res, tokens, {})
    on_disk = load_file(str(tmp_path / "s" / TENSORS))
    assert ("top_token_acts" not in on_disk) == sparse  # dense values stay dense
    assert on_disk["top_windows"].dtype == torch.int32
    st = FeatureStore.load(tmp_path / "s")
    assert st.t["top_token_acts"].dtype == torch.float16
    assert torch.equal(st.t["top_token_acts"], res.top_token_acts.half())
    assert torch.equal(st.t["top_windows"], res.top_windows) and st.t["top_windows"].dtype == torch.int64
    assert not any(k.startswith("token_acts_") for k in st.t)
    dense_bytes = res.top_token_acts.numel() * 2
    stored = sum(v.numel() * v.element_size() for k, v in on_disk.items() if "token_acts" in k)
    assert (stored < dense_bytes) if sparse else stored == dense_bytes


def test_schema_1_store_still_loads(tmp_path: Path) -> None:
    res, tokens = _result(True)
    folder = save_store(tmp_path / "s", res, tokens, {})
    t = FeatureStore.load(folder).t
    t["top_windows"] = t["top_windows"].long()
    save_file({k: v.contiguous() for k, v in t.items()}, str(folder / TENSORS))  # the old layout
    meta = json.loads((folder / META).read_text())
    (folder / META).write_text(json.dumps({**meta, "schema": 1}))
    old = FeatureStore.load(folder)
    assert torch.equal(old.t["top_token_acts"], res.top_token_acts.half())
    (folder / META).write_text(json.dumps({**meta, "schema": 7}))
    with pytest.raises(UserError, match="'schema' is 7"):
        FeatureStore.load(folder)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda t: t.pop("token_acts_values"), "token_acts_values"),
    (lambda t: t.__setitem__("token_acts_index", t["token_acts_index"] + 10**6), "indices <"),
    (lambda t: t.__setitem__("token_acts_shape", torch.tensor([2, 3])), "3 sizes"),
])
def test_damaged_sparse_values_are_one_line(tmp_path: Path, damage, message: str) -> None:
    res, tokens = _result(True)
    folder = save_store(tmp_path / "s", res, tokens, {})
    t = load_file(str(folder / TENSORS))
    damage(t)
    save_file(t, str(folder / TENSORS))
    with pytest.raises(UserError, match=message):
        FeatureStore.load(folder)
