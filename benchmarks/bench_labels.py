"""L1: labelling every latent of a 32,768-latent SAE — the batched labeller vs feature by feature.

Both sides label the same synthetic features (language by the paper and script rules,
granularity by the rule classifier with JMdict when installed): 50 examples of 64 tokens each,
activations quantised 0–10 like the study's files, tokens drawn Zipf-like from the real LLM-jp
tokenizer's vocabulary when ``../shared`` has it (else from generated pieces), each feature a
token-, synonym-, semantic- or noise-like pattern. The per-feature path
(``paper_language`` + ``script_language`` + ``classify``, what the features stage did) runs on a
sample; the batched one (``llmjp_ckpt.labels.batch.label_features``) on every feature, in
chunks of ``--chunk-features`` generated just before they are labelled (generation not timed).
Run:

    .venv/bin/python benchmarks/bench_labels.py [--features 32768] [--workers 2] [--ref-sample 512]

Prints features/s for each side (CPU seconds for the one-process figures, so a busy machine
does not distort the ratio; wall seconds for the ``--workers`` run) and checks that both sides
give the same labels on the sample.

``--store`` measures the features stage's own path instead: a synthetic top-N store of
``--features`` latents (windows of real tokenizer ids, token-, semantic- and noise-like latents,
float16 activations) labelled by ``features.analyze.feature_rows`` (the store's arrays, one
batched call) against the per-feature path it replaced (``FeatureStore.examples`` +
``labels.assign.label_feature`` latent by latent) on a sample, side by side:

    .venv/bin/python benchmarks/bench_labels.py --store [--features 32768] [--workers 2] [--embed-dim 2048]

``--embed-dim D`` adds, in the same process, ``feature_rows`` with the optional input-embedding
synonym relation over a random ``vocabulary x D`` matrix (the cost only: random rows relate nothing).
"""

from __future__ import annotations

import argparse
import itertools
import random
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TOKENIZER = SHARED / "llm-jp-tokenizer-100k.ver3.0b1.model"


def vocabulary(seed: int = 0) -> list[str]:
    """Piece texts as the study's files show them (``▁`` as a space), most frequent first."""
    try:
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(TOKENIZER))
        return [sp.id_to_piece(i).replace("\u2581", " ") for i in range(3, sp.get_piece_size())]
    except (OSError, RuntimeError, ImportError):
        rng = random.Random(seed)
        letters = "abcdefghijklmnopqrstuvwxyz" * 3 + "あいうえおかきくけこアイウエオ東京日本語"
        return [(" " if rng.random() < 0.4 else "")
                + "".join(rng.choices(letters, k=rng.randint(1, 6))) for _ in range(50_000)]


def make_features(n: int, vocab: list[str], rng: random.Random, n_ex: int = 50, width: int = 64):
    """``n`` synthetic features in the study's example format."""
    cum = list(itertools.accumulate(1.0 / (r + 10) for r in range(len(vocab))))  # Zipf-like
    feats = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.5:  # token: one or two forms
            forms, w = rng.choices(vocab[:5000], k=2), [0.85, 0.15]
        elif kind < 0.6:  # synonym-like: spelling variants and inflections of one word
            word = rng.choice(["colour", "recognise", "organise", "centre", "panel"])
            forms, w = [" " + word, " " + word + "s", " " + word.capitalize()], [1, 1, 1]
        elif kind < 0.8:  # semantic-like: many forms of one shape
            forms = [t for t in rng.sample(vocab[:20000], 400) if t[:1] == " "][:30]
            w = [1] * len(forms)
        else:  # noise
            forms, w = rng.choices(vocab, cum_weights=cum, k=50), [1] * 50
        tops = rng.choices(forms, w, k=n_ex)
        examples = []
        for top in tops:
            ctx = rng.choices(vocab, cum_weights=cum, k=width)
            acts = rng.choices((0, 0, 0, 0, 1, 2), k=width)
            i = rng.randrange(width)
            ctx[i], acts[i] = top, 10
            examples.append([[t, a] for t, a in zip(ctx, acts)])
        feats.append(examples)
    return feats


def synthetic_store(d_sae: int, n_windows: int, seed: int = 0, n_top: int = 50, width: int = 64):
    """A FeatureStore in memory shaped like the features stage's, and its TokenText."""
    import numpy as np
    import torch

    from llmjp_ckpt.errors import UserError
    from llmjp_ckpt.features.store import FeatureStore
    from llmjp_ckpt.tokens import TokenText

    try:
        tt = TokenText.from_sentencepiece(TOKENIZER)
    except (UserError, OSError, RuntimeError, ImportError):  # no tokenizer in ../shared: generated pieces
        tt = TokenText(tuple(["<unk>", "<s>", "</s>"] + [v.replace(" ", "\u2581") for v in vocabulary(seed)]), 1)
    rng = np.random.default_rng(seed)
    n_vocab = len(tt.pieces)
    p = 1.0 / (np.arange(3, n_vocab) + 10.0)
    windows = rng.choice(np.arange(3, n_vocab), size=(n_windows, width + 1), p=p / p.sum())
    windows[:, 0] = 1  # BOS
    frequent = np.arange(3, 3 + 400)  # forms of token-like latents: frequent pieces
    where = {int(t): np.argwhere(windows[:, 1:] == t) for t in frequent}
    wins = np.full((d_sae, n_top), -1, np.int64)
    acts = np.zeros((d_sae, n_top, width), np.float32)
    for f in range(d_sae):
        kind = rng.random()
        if kind < 0.05:
            continue  # dead
        if kind < 0.55:  # token-like: one or two frequent forms at the peak
            occ = np.concatenate([where[int(t)] for t in rng.choice(frequent, 2)])
            occ = occ[rng.choice(len(occ), min(n_top, len(occ)), replace=False)]
            wi, pos = occ[:, 0], occ[:, 1]
        else:  # semantic- or noise-like: any window, any position
            wi, pos = rng.choice(n_windows, n_top, replace=False), rng.integers(0, width, n_top)
        n = len(wi)
        noise = rng.random((n, width)) < 0.05
        acts[f, :n] = noise * rng.random((n, width)) * 2
        acts[f, :n][np.arange(n), pos] = 3 + 5 * rng.random(n)
        wins[f, :n] = wi
    order = np.argsort(-acts.max(2), axis=1, kind="stable")
    wins, acts = np.take_along_axis(wins, order, 1), np.take_along_axis(acts, order[:, :, None], 1)
    ids = np.unique(wins[wins >= 0])
    t = {"top_windows": torch.from_numpy(wins), "top_token_acts": torch.from_numpy(acts).half(),
         "top_values": torch.from_numpy(acts.max(2)), "fire_count": torch.from_numpy((acts > 0).sum((1, 2))),
         "act_sum": torch.from_numpy(acts.sum((1, 2)).astype(np.float64)),
         "max_activation": torch.from_numpy(acts.max((1, 2))), "window_ids": torch.from_numpy(ids),
         "window_tokens": torch.from_numpy(windows[ids].astype(np.int32))}
    meta = {"schema": 1, "n_tokens": n_windows * width, "n_windows": n_windows, "d_sae": d_sae,
            "n_top": n_top, "first_position": 1, "sae_weights_hash": "synthetic"}
    return FeatureStore(Path("synthetic"), meta, t), tt


def main_store(args: argparse.Namespace) -> None:
    """``--store``: the features stage's labelling, batched on the store vs latent by latent."""
    from llmjp_ckpt.features.analyze import feature_rows
    from llmjp_ckpt.labels.assign import LABEL_COLUMNS, label_feature
    from llmjp_ckpt.labels.granularity import default_backend

    t = time.perf_counter()
    st, tt = synthetic_store(args.features, args.windows, args.seed)
    backend = default_backend()
    backend.resolved()
    print(f"store: {st.d_sae} latents x {st.t['top_windows'].shape[1]} examples x "
          f"{st.t['top_token_acts'].shape[2]} tokens over {args.windows} windows, vocabulary "
          f"{len(tt.pieces)} (built in {time.perf_counter() - t:.1f} s, not counted)")
    sample = list(range(0, st.d_sae, max(1, st.d_sae // args.ref_sample)))[: args.ref_sample]
    feature_rows(st, 0, "warm", tt, 50, backend)  # warm the per-process caches both sides share
    t = time.process_time()
    ref = [label_feature(st.examples(f, tt)[:50], backend=backend) for f in sample]
    t_ref = time.process_time() - t
    t = time.process_time()
    rows = feature_rows(st, 0, "bench", tt, 50, backend)
    t_one = time.process_time() - t
    same = sum(r == {k: rows[f][k] for k in LABEL_COLUMNS} for r, f in zip(ref, sample))
    t = time.perf_counter()
    rows2 = feature_rows(st, 0, "bench", tt, 50, backend, workers=args.workers)
    wall = time.perf_counter() - t
    assert rows2 == rows
    ref_fs, one = len(sample) / t_ref, st.d_sae / t_one
    print(f"per-feature path (examples + label_feature): {len(sample)} latents in {t_ref:.2f} CPU s = "
          f"{ref_fs:,.0f} features/s on one core")
    print(f"feature_rows, 1 process: {st.d_sae} latents in {t_one:.2f} CPU s = {one:,.0f} features/s "
          f"({one / ref_fs:.1f}x the per-feature path); identical labels {same}/{len(sample)}")
    print(f"feature_rows, {args.workers} workers: {st.d_sae} latents in {wall:.2f} wall s = "
          f"{st.d_sae / wall:,.0f} features/s (wall clock: a busy machine lowers it)")
    if args.embed_dim:  # the optional W_E synonym relation (features granularity_embed_threshold)
        import numpy as np

        from llmjp_ckpt.labels.granularity import RuleBackend, embedder_from_vocab

        w_e = np.random.default_rng(args.seed).standard_normal((len(tt.pieces), args.embed_dim), dtype=np.float32)
        emb = RuleBackend(params=backend.params, embed=embedder_from_vocab(
            {p: i for i, p in enumerate(tt.pieces)}, w_e), embed_threshold=0.6)
        t = time.process_time()
        feature_rows(st, 0, "bench", tt, 50, emb)
        t_emb = time.process_time() - t
        print(f"feature_rows + W_E relation ({len(tt.pieces)} x {args.embed_dim}), 1 process: {st.d_sae} "
              f"latents in {t_emb:.2f} CPU s = {st.d_sae / t_emb:,.0f} features/s ({t_emb / t_one:.2f}x the "
              "time without it)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=int, default=32768, help="latents of the SAE")
    ap.add_argument("--workers", type=int, default=2, help="processes of the batched run")
    ap.add_argument("--ref-sample", type=int, default=512, help="features for the per-feature path")
    ap.add_argument("--chunk-features", type=int, default=4096, help="features generated at a time")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--store", action="store_true", help="the features stage's path on a synthetic store")
    ap.add_argument("--windows", type=int, default=16384, help="test windows of the --store run")
    ap.add_argument("--embed-dim", type=int, default=0,
                    help="--store: also time the W_E synonym relation with a random d x vocab matrix")
    args = ap.parse_args()
    if args.store:
        main_store(args)
        return

    from llmjp_ckpt.labels.batch import label_features
    from llmjp_ckpt.labels.granularity import classify, default_backend
    from llmjp_ckpt.labels.language import paper_language, script_language

    vocab = vocabulary(args.seed)
    backend = default_backend()
    t = time.perf_counter()
    dic = backend.resolved()
    print(f"vocabulary {len(vocab)} pieces ({'tokenizer' if TOKENIZER.exists() else 'generated'}); "
          f"dictionary {'JMdict' if dic is not None else 'none'} (loaded in "
          f"{time.perf_counter() - t:.1f} s, not counted)")
    rng = random.Random(args.seed)

    sample = make_features(args.ref_sample, vocab, rng)
    label_features(sample[:64])  # warm the per-process caches both sides share
    t = time.process_time()
    ref = [(paper_language(e), script_language(e), *classify(e)) for e in sample]
    t_ref = time.process_time() - t
    t = time.process_time()
    got = label_features(sample)
    t_one_sample = time.process_time() - t
    same = sum(r == (g.language_paper, g.language_script, g.granularity, g.confidence)
               for r, g in zip(ref, got))
    print(f"per-feature path: {len(sample)} features in {t_ref:.2f} CPU s = "
          f"{len(sample) / t_ref:,.0f} features/s on one core")
    print(f"batched, 1 process, same sample: {t_one_sample:.2f} CPU s = "
          f"{len(sample) / t_one_sample:,.0f} features/s; identical labels {same}/{len(sample)}")

    cpu = wall = 0.0
    done = 0
    while done < args.features:
        chunk = make_features(min(args.chunk_features, args.features - done), vocab, rng)
        t = time.process_time()
        label_features(chunk)
        cpu += time.process_time() - t
        t = time.perf_counter()
        label_features(chunk, workers=args.workers)
        wall += time.perf_counter() - t
        done += len(chunk)
    one = done / cpu
    print(f"batched, 1 process: {done} features in {cpu:.1f} CPU s = {one:,.0f} features/s "
          f"({one * t_ref / len(sample):.0f}x the per-feature path)")
    print(f"batched, {args.workers} processes: {done} features in {wall:.1f} wall s = "
          f"{done / wall:,.0f} features/s (wall clock: a busy machine lowers it)")
    print(f"projected on {args.workers} idle cores: {one * args.workers:,.0f} features/s; "
          f"{args.features} latents in {args.features / (one * args.workers):.1f} s")


if __name__ == "__main__":
    main()
