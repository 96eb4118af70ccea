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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=int, default=32768, help="latents of the SAE")
    ap.add_argument("--workers", type=int, default=2, help="processes of the batched run")
    ap.add_argument("--ref-sample", type=int, default=512, help="features for the per-feature path")
    ap.add_argument("--chunk-features", type=int, default=4096, help="features generated at a time")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

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
