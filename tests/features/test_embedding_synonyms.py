"""The features stage's optional synonym relation from the model's own input embeddings
(``granularity_embed_threshold``): rows looked up by the tokenizer's pieces, off by default,
hashed only when on, a clear error without a tokenizer."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from llmjp_ckpt.errors import UserError
from llmjp_ckpt.features import FeaturesConfig, analyze_run
from llmjp_ckpt.features.analyze import embedding_backend
from llmjp_ckpt.labels.granularity import RuleBackend, RuleParams
from llmjp_ckpt.runfolder import RunFolder
from tests.feature_builders import build_model, build_run, build_token_text
from tests.labels_builders import build_examples

CFG = FeaturesConfig(n_top=4, batch_size=8, norm_windows=8, png=False, norm_study=False)


class _Vocab:
    padding_side = "right"  # what TransformerLens reads of a model's tokenizer here

    def __init__(self, vocab: dict[str, int]):
        self.vocab = vocab

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)


def test_embedding_backend_reads_w_e_rows_by_piece() -> None:
    w = torch.zeros(4, 3)
    w[0] = torch.tensor([1.0, 0.0, 0.0])  # ▁grid
    w[1] = torch.tensor([0.9, 0.1, 0.0])  # 格子: close to grid
    w[2] = torch.tensor([0.0, 0.0, 1.0])  # ▁tokyo: unrelated
    model = SimpleNamespace(W_E=w, tokenizer=_Vocab({"\u2581grid": 0, "格子": 1, "\u2581Tokyo": 2}))
    base = RuleBackend(params=RuleParams(), use_dictionary=False)
    b = embedding_backend(base, model, 0.6)
    assert b.params == base.params and b.embed_threshold == 0.6
    syn = build_examples([" grid"] * 5 + ["格子"] * 5)
    assert RuleBackend(params=RuleParams(), use_dictionary=False).classify(syn)[0] == "token"
    assert RuleBackend(params=RuleParams(), embed=b.embed, use_dictionary=False).classify(syn)[0] == "synonym"
    far = build_examples([" grid"] * 5 + [" Tokyo"] * 5)
    assert RuleBackend(params=RuleParams(), embed=b.embed, use_dictionary=False).classify(far)[0] == "token"
    # the threshold decides: cos(grid, 格子) = 0.994
    strict = RuleBackend(params=RuleParams(), embed=b.embed, embed_threshold=0.999, use_dictionary=False)
    assert strict.classify(syn)[0] == "token"
    with pytest.raises(UserError, match="granularity_embed_threshold needs the model's tokenizer"):
        embedding_backend(base, SimpleNamespace(W_E=w), 0.6)


def test_threshold_is_validated_and_hashed_only_when_on(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="granularity_embed_threshold=1.5"):
        FeaturesConfig(granularity_embed_threshold=1.5)
    run = build_run(tmp_path / "run", steps=(10,), sae_ids=("none",))
    tokenizer = _Vocab({p: i for i, p in enumerate(build_token_text().pieces)})
    loaded: list[int] = []

    def loader(step: int):
        loaded.append(step)
        m = build_model(seed=step)
        m.tokenizer = tokenizer
        return m

    analyze_run(run, CFG, model_loader=loader, token_text=build_token_text())
    rec = RunFolder(run).stage_record("features")
    assert "granularity_embed_threshold" not in rec["config"]["features"]  # off: the old hash
    off = pd.read_parquet(run / "analysis" / "features.parquet")
    on_cfg = FeaturesConfig(**{**CFG.__dict__, "granularity_embed_threshold": -0.99})
    loaded.clear()
    analyze_run(run, on_cfg, model_loader=loader, token_text=build_token_text())
    rec = RunFolder(run).stage_record("features")
    assert rec["config"]["features"]["granularity_embed_threshold"] == -0.99  # on: reruns
    assert loaded == [10, 10]  # the last checkpoint once for W_E, then the step itself
    on = pd.read_parquet(run / "analysis" / "features.parquet")
    # a threshold near -1 relates every pair of forms that have a row: more synonym calls
    n_off = int((off["granularity"] == "synonym").sum())
    n_on = int((on["granularity"] == "synonym").sum())
    assert n_on > n_off and np.array_equal(on["language_paper"].fillna(""), off["language_paper"].fillna(""))
