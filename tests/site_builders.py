"""A small synthetic run folder for the site tests, in the agreed formats.

A SentencePiece tokenizer trained here (byte fallback; XSS payloads as whole pieces), token
windows mixing Japanese, English, byte-fallback characters and payloads, a tiny
HookedTransformer, random TopK SAEs saved with SAELens, top-N stores written by the features
code, ``features.parquet`` with labels, and the compare stage's outputs (``transitions.json``,
lineages, plotly figures with plotly.js inline) from ``compare_run``.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import torch

from tests.feature_builders import build_model, build_sae

# Each would run (set document.title) if a page inserted corpus text as markup.
PAYLOAD_PIECES = [
    "<script>document.title='XSS1'</script>",
    "</span><svg/onload=document.title='XSS3'>",
    "\"onmouseover=\"document.title='XSS4'",
    "</script><script>document.title='XSS5'</script>",
]
PAYLOAD_TEXT = "<img src=x onerror=document.title='XSS2'>"  # spaces: several pieces
JA = ["京都の猫は静かに眠る。", "東京タワーは高い。", "赤いりんごを食べました。", "犬は公園で走る。"]
EN = ["The cat in Kyoto sleeps quietly.", "Tokyo Tower is tall.", "I ate a red apple."]
UNSEEN = "鰻丼"  # not in the tokenizer's training text: byte-fallback pieces
STEPS = (10, 100)
SAE_IDS = ("none", "scalar")
D_SAE = 32
WINDOW = 17  # BOS + 16 studied positions


def build_sp_tokenizer(out: Path) -> Path:
    """Train a tiny SentencePiece model with byte fallback; return the ``.model`` path."""
    import sentencepiece as spm

    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    lines = [rng.choice(JA) + rng.choice(EN) + " " + PAYLOAD_TEXT for _ in range(300)]
    corpus = out / "corpus.txt"
    corpus.write_text("\n".join(lines), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(out / "sp"), vocab_size=420, model_type="unigram",
        byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=3,
        user_defined_symbols=PAYLOAD_PIECES, num_threads=1, minloglevel=2, hard_vocab_limit=False,
    )
    corpus.unlink()
    return out / "sp.model"


def build_windows_from_text(sp_model: Path, n: int = 48, seed: int = 0) -> torch.Tensor:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        payload = PAYLOAD_PIECES[i % len(PAYLOAD_PIECES)] if i % 5 else PAYLOAD_TEXT
        text = rng.choice(JA) + UNSEEN + payload + rng.choice(JA) + " " + rng.choice(EN)
        ids = sp.encode(text)
        rows.append([sp.bos_id()] + (ids * 3)[: WINDOW - 1])
    return torch.tensor(rows)


def build_site_run(root: Path) -> tuple[Path, object, object]:
    """The run folder; returns ``(run, token_text, model)``."""
    import datasets
    import pandas as pd
    from safetensors.torch import save_file

    from llmjp_ckpt.features.analyze import COLUMNS
    from llmjp_ckpt.features.store import FeatureStore, save_store
    from llmjp_ckpt.features.topn import TopNConfig, collect_topn, model_encoder
    from llmjp_ckpt.saes.dead import weights_hash, write_firing_counts
    from llmjp_ckpt.tokens import TokenText

    run = root / "run"
    sp_model = build_sp_tokenizer(root / "tok")
    tt = TokenText.from_sentencepiece(sp_model)
    toks = build_windows_from_text(sp_model)
    d_vocab = ((len(tt) + 15) // 16) * 16 + 16  # padded past the tokenizer, like LLM-jp-3
    model = build_model(d_vocab=d_vocab, n_ctx=WINDOW)
    ds = datasets.Dataset.from_dict({"input_ids": toks.tolist(), "language": ["ja"] * len(toks)})
    ds.save_to_disk(str(run / "data" / "test"))
    rows = []
    langs, grans = ["ja", "en", "mix"], ["token", "synonym", "semantic", "uninterpretable"]
    for s_i, step in enumerate(STEPS):
        saes = {}
        for j, sid in enumerate(SAE_IDS):
            sae = build_sae(d_sae=D_SAE, k=4, seed=j, model_name="tiny")  # same SAE per step: chains span both
            folder = run / "saes" / f"iter_{step:07d}" / sid
            sae.save_model(str(folder))
            save_file({"sparsity": torch.full((D_SAE,), -1.0)}, str(folder / "sparsity.safetensors"))
            write_firing_counts(folder, [50] * D_SAE, n_tokens=1000)  # none dead (saes.dead)
            (folder / "metrics.json").write_text(json.dumps(
                {"explained_variance": 0.6 + 0.1 * j, "l0": 4.0, "dead_fraction": 0.0}), encoding="utf-8")
            saes[sid] = sae
        res = collect_topn(toks, model_encoder(model, saes), {k: D_SAE for k in saes},
                           TopNConfig(n_top=6, batch_size=16))
        for sid, r in res.items():
            folder = run / "features" / f"iter_{step:07d}" / sid
            sae_folder = run / "saes" / f"iter_{step:07d}" / sid
            save_store(folder, r, toks, {"step": step, "sae_id": sid,
                                         "hook_name": saes[sid].cfg.metadata.hook_name,
                                         "sae_weights_hash": weights_hash(sae_folder)})
            st = FeatureStore.load(folder)
            for f in range(D_SAE):
                rows.append({"checkpoint": step, "sae_id": sid, "feature": f,
                             "frequency": float(st.frequency[f]),
                             "max_activation": float(st.t["max_activation"][f]),
                             "mean_activation": float(st.mean_activation[f]),
                             "language_paper": langs[f % 3], "language_script": langs[(f + 1) % 3],
                             "granularity": grans[f % 4], "granularity_confidence": (f % 7) / 7})
    buf = io.BytesIO()
    pd.DataFrame(rows, columns=COLUMNS).to_parquet(buf, index=False)
    (run / "analysis").mkdir(parents=True, exist_ok=True)
    (run / "analysis" / "features.parquet").write_bytes(buf.getvalue())
    from llmjp_ckpt.features.analyze import write_figures as feature_figures

    # the language / granularity share figures the features stage writes: the index's headline
    feature_figures(pd.DataFrame(rows, columns=COLUMNS), run / "analysis" / "figures", png=False)
    from llmjp_ckpt.compare import CompareConfig, compare_run

    # transitions.json, lineages/<sae_id>.parquet and plotly figures, by the compare stage
    compare_run(run, CompareConfig(png=False))
    return run, tt, model


_BUILT: dict[str, tuple] = {}


def built_site(base: Path) -> tuple:
    """``(run, token_text, model, cfg, index)``: the run above with its site built, once per
    pytest session (``base`` is the session's temp root). Read-only: copy it to change it."""
    from llmjp_ckpt.site import SiteConfig, build_site

    key = str(base)
    if key not in _BUILT:
        torch.set_num_threads(1)
        run, tt, model = build_site_run(base / "site_run")
        cfg = SiteConfig(max_feature_pages=2, dashboard_windows=48)
        index = build_site(run, cfg, model_loader=lambda step: model, token_text=tt)
        _BUILT[key] = (run, tt, model, cfg, index)
    return _BUILT[key]
