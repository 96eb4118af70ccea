"""The site stage's settings (``configs/site.yaml``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from llmjp_ckpt import config
from llmjp_ckpt.errors import UserError


@dataclass(frozen=True)
class SiteConfig:
    """The site stage's settings (``configs/site.yaml``)."""

    n_frequent: int = 40  # most frequent live features per SAE shown in the browser
    n_labelled: int = 40  # most confidently labelled (non-"uninterpretable") features per SAE
    max_lineages: int = 50  # lineages given a page (longest first)
    n_examples: int = 5  # top examples shown per feature
    context: int = 12  # tokens kept each side of an example's strongest token
    feature_pages: bool = True  # render sae-dashboard pages (needs the model and d3)
    max_feature_pages: int = 2  # sae-dashboard pages per SAE (~0.7 MB each; the catalog has all)
    dashboard_windows: int = 256  # test windows added to the store's top windows for sae-dashboard
    device: str = "cpu"  # where the model runs for the sae-dashboard pages (not hashed)
    dtype: str = "float32"  # the pages' model dtype: float32 / bfloat16 / float16 (not hashed)
    trust_pickle: bool = False  # allow pickle (.bin/.pt) weights for the pages' model: trusted only

    def __post_init__(self) -> None:
        from llmjp_ckpt.devices import check_dtype

        check_dtype(self.dtype, "site config: dtype")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, int) and not isinstance(v, bool) and v < 0:
                raise UserError(f"site config: {f.name}={v}, expected >= 0")

    @classmethod
    def from_yaml(cls, path: str | Path) -> SiteConfig:
        return config.load(cls, path)
