"""P5: top-N examples for every latent in one streaming pass vs sae-dashboard's own collection.

Both sides get the same HookedTransformer (random, LLM-jp-shaped), the same TopK SAE, the same
token windows, every latent, and the same N top examples (sae-dashboard also collects its
quantile groups; ours keeps top-N only). sae-dashboard's ``SaeVisRunner`` re-runs the model
over all tokens once per batch of
``minibatch_size_features`` latents (its default 256) and computes its page data; ours runs
the model once over all windows (per-token values kept during the pass). Run:

    .venv/bin/python benchmarks/bench_topn.py [--d-sae 512] [--windows 64] [--n-top 20]

Prints both wall times and the ratio; also checks that the two agree on each latent's top
window for the latents where sae-dashboard's top example is unambiguous.

``--fullshape`` (issue 12): the features stage at the study's shape on CPU — a random-weight
LLM-jp-3-1.8B-shaped model (d 2,048, 16 heads, MLP 7,168, vocab 99,584) with ``--fs-layers``
blocks (the study's hook is after block 12: the 12-block forward is the measured per-block time
× 12, plus the embedding), a 32,768-latent K 32 TopK SAE, batches of 32 windows × 64 studied
tokens, N = 50; per batch, side by side in one run: model forward, SAE encode, top-N
bookkeeping (``TopNCollector.update`` + ``finish_pass1``).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch


def build(d_model: int, n_layers: int, d_vocab: int, d_sae: int, k: int, n_windows: int, seed: int = 0):
    from sae_lens import TopKSAE, TopKSAEConfig
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(seed)
    model = HookedTransformer(HookedTransformerConfig(
        d_model=d_model, n_layers=n_layers, n_heads=d_model // 32, d_head=32, d_mlp=4 * d_model,
        d_vocab=d_vocab, n_ctx=65, act_fn="silu", normalization_type="RMS",
        positional_embedding_type="rotary", gated_mlp=True, seed=seed)).eval()
    hook = f"blocks.{n_layers // 2}.hook_resid_post"
    # rescale_acts_by_decoder_norm: SaeVisRunner calls fold_W_dec_norm, which TopK refuses otherwise
    cfg = TopKSAEConfig(d_in=d_model, d_sae=d_sae, k=k, rescale_acts_by_decoder_norm=True)
    cfg.metadata.hook_name = hook
    sae = TopKSAE(cfg).eval()
    tokens = torch.randint(3, d_vocab, (n_windows, 65))
    tokens[:, 0] = 1
    return model, sae, tokens, hook


def run_ours(model, sae, tokens, n_top: int, batch: int):
    from llmjp_ckpt.features.topn import TopNConfig, collect_topn, model_encoder

    # sae-dashboard folds the decoder norm into the encoder first; do the same so both sides
    # rank identical activations
    sae = copy.deepcopy(sae)
    sae.fold_W_dec_norm()
    cfg = TopNConfig(n_top=n_top, batch_size=batch)
    t = time.perf_counter()
    res = collect_topn(tokens, model_encoder(model, {"s": sae}, first_position=0), {"s": sae.cfg.d_sae}, cfg)["s"]
    return time.perf_counter() - t, res


def run_dashboard(model, sae, tokens, hook: str, n_top: int, n_quantile: int, batch: int):
    from sae_dashboard.components_config import (
        ActsHistogramConfig,
        Column,
        FeatureTablesConfig,
        LogitsHistogramConfig,
        LogitsTableConfig,
        SequencesConfig,
    )
    from sae_dashboard.layout import SaeVisLayoutConfig
    from sae_dashboard.sae_vis_data import SaeVisConfig
    from sae_dashboard.sae_vis_runner import SaeVisRunner

    layout = SaeVisLayoutConfig(columns=[
        Column(FeatureTablesConfig()),
        Column(ActsHistogramConfig(), LogitsTableConfig(), LogitsHistogramConfig()),
        # buffer=None: whole windows as examples, as ours (a (5, 5) buffer would also skip
        # maxima near the window edges)
        Column(SequencesConfig(stack_mode="stack-none", top_acts_group_size=n_top,
                               n_quantiles=n_quantile, buffer=None)),
    ])
    cfg = SaeVisConfig(hook_point=hook, features=list(range(sae.cfg.d_sae)), minibatch_size_tokens=batch,
                       feature_centric_layout=layout, device="cpu", verbose=False)
    sae = copy.deepcopy(sae)  # SaeVisRunner mutates the SAE (fold_W_dec_norm)
    t = time.perf_counter()
    data = SaeVisRunner(cfg).run(encoder=sae, model=model, tokens=tokens)
    return time.perf_counter() - t, data


def top_window_agreement(ours, data, tokens) -> tuple[int, int]:
    """Latents whose top window (by max activation) is the same on both sides."""
    agree = total = 0
    for feat, fd in data.feature_data_dict.items():
        groups = fd.sequence_data.seq_group_data
        if not groups or not groups[0].seq_data:
            continue
        best = max(groups[0].seq_data, key=lambda s: max(s.feat_acts))
        win = int(ours.top_windows[feat, 0])
        if win < 0:
            continue
        total += 1
        # the dashboard shows a buffer around the max token: find it inside our top window
        seq = best.token_ids
        row = tokens[win].tolist()
        agree += any(row[i : i + len(seq)] == list(seq) for i in range(len(row) - len(seq) + 1))
    return agree, total


def scale_check(d_sae: int = 32768, batch: int = 32, n_batches: int = 40) -> None:
    """Bookkeeping cost and memory at the real width, on synthetic TopK codes (64 per token)."""
    import resource

    from llmjp_ckpt.features.topn import TopNCollector, TopNConfig

    col = TopNCollector(d_sae, TopNConfig(n_top=50, batch_size=batch))
    g = torch.Generator().manual_seed(0)
    times = []
    for i in range(n_batches):
        acts = torch.zeros(batch, 64, d_sae)
        acts.scatter_(2, torch.randint(0, d_sae, (batch, 64, 64), generator=g),
                      torch.rand(batch, 64, 64, generator=g))
        t = time.perf_counter()
        col.update(acts, torch.arange(i * batch, (i + 1) * batch))
        times.append(time.perf_counter() - t)
    per = sorted(times[-8:])[4]
    print(f"scale: {d_sae} latents, batches of {batch} x 64 tokens: {per * 1000:.0f} ms per batch "
          f"(median of the last 8 of {n_batches}); peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def fullshape_check(n_layers: int = 2, n_batches: int = 12, batch: int = 32) -> None:
    """Top-N bookkeeping vs the model forward at the study's full shape (see the docstring)."""
    import resource

    from sae_lens import TopKSAE, TopKSAEConfig
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from llmjp_ckpt.features.topn import TopNCollector, TopNConfig

    torch.manual_seed(0)
    d, d_sae, study_blocks = 2048, 32768, 12
    model = HookedTransformer(HookedTransformerConfig(
        d_model=d, n_layers=n_layers, n_heads=16, d_head=128, d_mlp=7168, d_vocab=99584,
        n_ctx=65, act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary",
        gated_mlp=True, seed=0)).eval()
    hook = f"blocks.{n_layers - 1}.hook_resid_post"
    sae = TopKSAE(TopKSAEConfig(d_in=d, d_sae=d_sae, k=32)).eval()
    col = TopNCollector(d_sae, TopNConfig(n_top=50, batch_size=batch))
    g = torch.Generator().manual_seed(0)
    t_embed, t_model, t_sae, t_book = [], [], [], []
    with torch.no_grad():
        for i in range(n_batches):
            toks = torch.randint(3, 99584, (batch, 65), generator=g)
            toks[:, 0] = 1
            t0 = time.perf_counter()
            model.run_with_cache(toks, stop_at_layer=0, names_filter=lambda n: False)
            t1 = time.perf_counter()
            _, cache = model.run_with_cache(toks, stop_at_layer=n_layers,
                                            names_filter=lambda n: n == hook)
            t2 = time.perf_counter()
            acts = sae.encode(cache[hook][:, 1:])
            t3 = time.perf_counter()
            col.update(acts, torch.arange(i * batch, (i + 1) * batch))
            t4 = time.perf_counter()
            t_embed.append(t1 - t0)
            t_model.append(t2 - t1)
            t_sae.append(t3 - t2)
            t_book.append(t4 - t3)
            del cache, acts
        t5 = time.perf_counter()
        col.finish_pass1()
        t_finish = time.perf_counter() - t5
    embed = sum(t_embed) / n_batches
    per_block = (sum(t_model) / n_batches - embed) / n_layers
    fwd12 = embed + study_blocks * per_block
    enc = sum(t_sae) / n_batches
    book = (sum(t_book) + t_finish) / n_batches
    q = max(1, n_batches // 4)  # the last quarter: nearer the steady state of a long pass
    late = sum(t_book[-q:]) / q
    kept = int((col.top_windows >= 0).sum())
    print(f"full shape: {n_layers} random blocks measured, {n_batches} batches x {batch} windows x "
          f"64 tokens, 32,768 latents, K 32, N 50, torch threads {torch.get_num_threads()}")
    print(f"model forward ({n_layers} blocks measured): "
          f"{sum(t_model) / n_batches * 1000:.0f} ms/batch "
          f"(embedding {embed * 1000:.0f} ms, {per_block * 1000:.0f} ms per block)")
    print(f"model forward, {study_blocks} blocks (embedding + {study_blocks} x per block): "
          f"{fwd12 * 1000:.0f} ms/batch")
    print(f"SAE encode: {enc * 1000:.0f} ms/batch")
    print(f"top-N bookkeeping: {book * 1000:.0f} ms/batch over all {n_batches} batches incl. "
          f"finish ({t_finish * 1000:.0f} ms once); {late * 1000:.0f} ms/batch over the last {q}")
    print(f"ratio bookkeeping / model forward (12 blocks): {book / fwd12:.1%} (goal <= 25%); "
          f"last {q} batches {late / fwd12:.1%}; / (forward + SAE encode) {book / (fwd12 + enc):.1%}")
    print(f"kept examples {kept} of {d_sae * 50}; second model pass: none; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=2000)
    ap.add_argument("--d-sae", type=int, default=512)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--windows", type=int, default=64)
    ap.add_argument("--n-top", type=int, default=20)
    ap.add_argument("--n-quantile", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scale", action="store_true", help="only the 32,768-latent bookkeeping check")
    ap.add_argument("--fullshape", action="store_true",
                    help="bookkeeping vs model forward at the study's full shape")
    ap.add_argument("--fs-layers", type=int, default=2, help="blocks built for --fullshape")
    ap.add_argument("--fs-batches", type=int, default=12, help="batches of 32 windows for --fullshape")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.scale:
        scale_check()
        return
    if args.fullshape:
        fullshape_check(args.fs_layers, args.fs_batches)
        return
    model, sae, tokens, hook = build(args.d_model, args.layers, args.vocab, args.d_sae, args.k, args.windows)
    print(f"model d_model={args.d_model} layers={args.layers}; SAE d_sae={args.d_sae} k={args.k}; "
          f"{args.windows} windows x 65 tokens; N={args.n_top}, quantile groups={args.n_quantile}; "
          f"torch threads={args.threads}")
    t_ours, ours = run_ours(model, sae, tokens, args.n_top, args.batch)
    print(f"ours (one streaming pass):                  {t_ours:.2f} s")
    t_dash, data = run_dashboard(model, sae, tokens, hook, args.n_top, args.n_quantile, args.batch)
    print(f"sae-dashboard SaeVisRunner.run:               {t_dash:.2f} s")
    print(f"speed-up: {t_dash / t_ours:.1f}x  (target >= 3x)")
    agree, total = top_window_agreement(ours, data, tokens)
    print(f"top window agrees for {agree}/{total} latents")


if __name__ == "__main__":
    main()
