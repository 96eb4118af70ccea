"""The site stage's settings (``configs/site.yaml``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

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
    max_feature_pages: int = 20  # sae-dashboard pages per SAE (~0.4 MB each)
    dashboard_windows: int = 256  # test windows sae-dashboard computes its pages from
    device: str = "cpu"  # where the model runs for the sae-dashboard pages

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, int) and not isinstance(v, bool) and v < 0:
                raise UserError(f"site config: {f.name}={v}, expected >= 0")

    @classmethod
    def from_yaml(cls, path: str | Path) -> SiteConfig:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"{path}: cannot read YAML ({exc.__class__.__name__})") from exc
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise UserError(f"{path}: unknown field(s) {unknown}; expected some of {sorted(known)}")
        return cls(**raw)
