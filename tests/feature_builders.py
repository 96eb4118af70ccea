"""Tiny builders for the feature/upload tests: an LLM-jp-shaped HookedTransformer, a random
TopK SAE, token windows, and a run folder with SAEs and a test split (SAELens format)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

HOOK = "blocks.0.hook_resid_post"


def build_model(d_vocab: int = 120, n_layers: int = 2, seed: int = 0, **overrides: Any):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(seed)
    cfg = {
        "d_model": 32, "n_layers": n_layers, "n_heads": 4, "d_head": 8, "d_mlp": 64,
        "d_vocab": d_vocab, "n_ctx": 65, "act_fn": "silu", "normalization_type": "RMS",
        "positional_embedding_type": "rotary", "gated_mlp": True, "seed": seed,
        "default_prepend_bos": False,
    }
    cfg.update(overrides)
    return HookedTransformer(HookedTransformerConfig(**cfg)).eval()


def build_sae(d_sae: int = 64, k: int = 4, hook: str = HOOK, seed: int = 0,
              normalisation: str | None = None, **meta: Any):
    """A random TopK SAE; with ``normalisation`` the project's per-token-normalised architecture."""
    from sae_lens import TopKSAE, TopKSAEConfig

    from llmjp_ckpt.saes.normalisation import TokenNormTopKSAE, TokenNormTopKSAEConfig

    torch.manual_seed(seed)
    if normalisation is None:
        cfg = TopKSAEConfig(d_in=32, d_sae=d_sae, k=k)
    else:
        cfg = TokenNormTopKSAEConfig(d_in=32, d_sae=d_sae, k=k, normalisation=normalisation)
    cfg.metadata.hook_name = hook
    for key, value in meta.items():
        setattr(cfg.metadata, key, value)
    sae = (TopKSAE if normalisation is None else TokenNormTopKSAE)(cfg)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
    return sae.eval()


def build_windows(n: int = 40, length: int = 17, d_vocab: int = 120, bos: int = 1,
                  seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    toks = torch.randint(3, d_vocab, (n, length), generator=g)
    toks[:, 0] = bos
    return toks


def build_run(root: Path, steps: tuple[int, ...] = (10, 100), sae_ids: tuple[str, ...] = ("none", "scalar"),
              n_windows: int = 24, d_vocab: int = 120) -> Path:
    """A run folder: RUN/data/test (datasets on disk) and RUN/saes/iter_*/<id>/ SAELens folders."""
    import datasets
    from safetensors.torch import save_file

    from llmjp_ckpt.saes.dead import write_firing_counts

    toks = build_windows(n_windows, 17, d_vocab)
    ds = datasets.Dataset.from_dict(
        {"input_ids": toks.tolist(), "language": ["ja", "en"] * (n_windows // 2)})
    ds.save_to_disk(str(root / "data" / "test"))
    for s_i, step in enumerate(steps):
        for j, sid in enumerate(sae_ids):
            sae = build_sae(seed=10 * s_i + j, normalisation=sid, model_name="tiny")
            out = root / "saes" / f"iter_{step:07d}" / sid
            sae.save_model(str(out))
            freq = torch.rand(sae.cfg.d_sae)
            freq[: 3 + j] = 0.0  # some dead latents, more in the second mode
            save_file({"sparsity": torch.log10(freq + 1e-10)}, str(out / "sparsity.safetensors"))
            write_firing_counts(out, (freq * 1000).ceil().long().numpy(), n_tokens=1000)
            (out / "runner_cfg.json").write_text(json.dumps({"hook_name": HOOK}), encoding="utf-8")
            (out / "metrics.json").write_text(json.dumps(
                {"explained_variance": 0.5 + 0.1 * j, "l0": 4.0, "dead_fraction": 0.05}),
                encoding="utf-8")
    return root


def build_token_text(d_vocab: int = 120):
    """A fake SentencePiece vocabulary: English, Japanese, byte pieces, HTML and control text."""
    from llmjp_ckpt.tokens import TokenText

    words = ["▁the", "▁cat", "▁Kyoto", "京都", "猫", "です", "。", ",", "<0x0A>", "<0xE3>", "<0x81>",
             "<0x82>", "<script>", "▁<img src=x onerror=alert(1)>", "\x07bell", "▁42", "の", "▁dog"]
    pieces = ["<unk>", "<s>", "</s>"] + [words[i % len(words)] + ("" if i < len(words) else f"{i}")
                                         for i in range(d_vocab - 3)]
    return TokenText(tuple(pieces), bos_id=1)


def build_planted_dead_run(root: Path, dead: tuple[int, ...] = (0, 5, 9),
                           steps: tuple[int, ...] = (10, 100), d_sae: int = 16,
                           n_windows: int = 24) -> Path:
    """A run whose SAEs (id ``none``) have the latents ``dead`` planted never to fire
    (``b_enc`` -100: never a positive top-k value), their firing counts measured on the test
    windows with ``build_model(seed=step)`` and written by ``saes.dead`` (as the train stage's
    metrics pass does), and ``metrics.json`` with the matching ``dead_fraction``."""
    import datasets

    from llmjp_ckpt.features.topn import model_encoder
    from llmjp_ckpt.saes.dead import dead_count, write_firing_counts

    toks = build_windows(n_windows, 17)
    langs = ["ja", "en"] * (n_windows // 2)
    datasets.Dataset.from_dict({"input_ids": toks.tolist(), "language": langs}
                               ).save_to_disk(str(root / "data" / "test"))
    for step in steps:
        sae = build_sae(d_sae=d_sae, k=4, seed=step, model_name="tiny")
        with torch.no_grad():
            sae.b_enc[list(dead)] = -100.0
        out = root / "saes" / f"iter_{step:07d}" / "none"
        sae.save_model(str(out))
        acts = model_encoder(build_model(seed=step), {"s": sae})(toks)["s"]
        write_firing_counts(out, (acts > 0).sum((0, 1)).numpy(),
                            n_tokens=acts.shape[0] * acts.shape[1])
        (out / "metrics.json").write_text(json.dumps({"dead_fraction": dead_count(out) / d_sae}),
                                          encoding="utf-8")
    return root
