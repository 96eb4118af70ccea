"""The one-pass top-N (per-token values kept during the pass) equals the old two-pass output."""

from __future__ import annotations

import torch

from llmjp_ckpt.features.topn import TopNConfig, collect_topn, model_encoder
from tests.feature_builders import build_model, build_sae, build_windows


def old_second_pass(tokens: torch.Tensor, encode, top_windows: dict[str, torch.Tensor],
                    n_positions: int, batch: int) -> dict[str, torch.Tensor]:
    """The removed pass 2: re-encode the union of selected windows (sorted, in batches) and read
    each (latent, slot)'s per-token values from that second forward."""
    union = torch.unique(torch.cat([w[w >= 0] for w in top_windows.values()]))
    out = {k: torch.zeros(*w.shape, n_positions, dtype=torch.float16)
           for k, w in top_windows.items()}
    for i in range(0, len(union), batch):
        ids = union[i : i + batch]
        acts = encode(tokens[ids])
        for name, wins in top_windows.items():
            f, c = (torch.isin(wins, ids)).nonzero(as_tuple=True)
            pos = torch.searchsorted(ids, wins[f, c])
            out[name][f, c] = acts[name][pos, :, f].to(torch.float16)
    return out


def test_one_pass_equals_old_two_pass_output_with_one_forward_per_batch() -> None:
    model = build_model()
    saes = {"a": build_sae(d_sae=96, k=6, seed=3), "b": build_sae(d_sae=40, k=2, seed=4)}
    toks = build_windows(n=45)
    enc = model_encoder(model, saes)
    calls: list[int] = []

    def counting(b: torch.Tensor) -> dict[str, torch.Tensor]:
        calls.append(len(b))
        return enc(b)

    cfg = TopNConfig(n_top=6, batch_size=8)
    res = collect_topn(toks, counting, {k: s.cfg.d_sae for k, s in saes.items()}, cfg)
    # one forward per batch of windows, every window once: no re-read
    assert calls == [8] * 5 + [5]
    old = old_second_pass(toks, enc, {k: r.top_windows for k, r in res.items()}, 16, 8)
    for name, r in res.items():
        assert (r.top_windows >= 0).sum() > 0.5 * r.top_windows.numel()  # the case is not trivial
        assert torch.equal(r.top_token_acts, old[name])


def test_slots_survive_many_evictions() -> None:
    """Windows that enter and leave a latent's buffer many times: every kept slot holds its
    own window's values (a slot bookkeeping mix-up would pair a window with another's)."""
    g = torch.Generator().manual_seed(5)
    w, t, f = 200, 5, 7
    scale = torch.linspace(0.1, 3, w)[:, None, None]  # later windows tend to win: many evictions
    acts = torch.relu(torch.randn(w, t, f, generator=g)) * scale
    acts[::3] = 0.0  # windows where nothing fires
    tokens = torch.zeros(w, t + 1, dtype=torch.long)
    tokens[:, 0] = torch.arange(w)
    res = collect_topn(tokens, lambda b: {"x": acts[b[:, 0]]}, {"x": f},
                       TopNConfig(n_top=9, batch_size=4))["x"]
    fi, slot = (res.top_windows >= 0).nonzero(as_tuple=True)
    assert len(fi) == f * 9
    assert torch.equal(res.top_token_acts[fi, slot], acts[res.top_windows[fi, slot], :, fi].half())
    assert torch.equal(res.top_values, acts.amax(1).T.sort(1, descending=True).values[:, :9])
