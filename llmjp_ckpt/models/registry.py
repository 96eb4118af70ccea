"""The checkpoint registry (``configs/models/*.yaml``): which models, which steps, where from."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from llmjp_ckpt.errors import UserError
from llmjp_ckpt.runfolder import STEP_DIR_RE, step_dir

REGISTRY_DIR = Path(__file__).resolve().parents[2] / "configs" / "models"


@dataclass
class ModelEntry:
    """One registered model and where its checkpoints come from."""

    name: str
    """Name used with ``load_model`` and ``HookedTransformer.from_pretrained``."""
    steps: list[int] | str = field(default_factory=list)
    """Registered training steps, or ``"discover"`` to list the ``iter_*`` folders of the root."""
    final_step: int | None = None
    """The step that the hub's main revision holds."""
    local_root: str | None = None
    """Folder holding ``iter_{step:07d}/`` HF checkpoints."""
    root_env: str | None = None
    """Environment variable that, when set, overrides ``local_root``."""
    hub_repo: str | None = None
    """Hugging Face repo id."""
    revision_pattern: str | None = None
    """Hub revision of an intermediate step, formatted with ``step``."""

    def __post_init__(self) -> None:
        if isinstance(self.steps, str) and self.steps != "discover":
            raise UserError(f"model {self.name}: steps must be a list of ints or 'discover', got {self.steps!r}")
        if isinstance(self.steps, list):
            if any(not isinstance(s, int) or s < 0 for s in self.steps):
                raise UserError(f"model {self.name}: steps must be non-negative ints, got {self.steps}")
            if self.steps != sorted(set(self.steps)):
                raise UserError(f"model {self.name}: steps must be strictly increasing, got {self.steps}")

    def root(self, override: str | Path | None = None) -> Path | None:
        """The local checkpoint root in force: argument, then environment, then config."""
        if override is not None:
            return Path(override)
        if self.root_env and os.environ.get(self.root_env):
            return Path(os.environ[self.root_env])
        return Path(self.local_root) if self.local_root else None

    def hub_revision(self, step: int | None) -> str:
        """The hub revision of ``step`` (``main`` for the final model)."""
        if step is None or step == self.final_step:
            return "main"
        if not self.revision_pattern:
            raise UserError(f"model {self.name}: no revision_pattern for intermediate step {step}")
        return self.revision_pattern.format(step=step)


def discover_steps(root: Path) -> list[int]:
    """Steps of the ``iter_XXXXXXX`` folders under ``root``, sorted."""
    if not root.is_dir():
        raise UserError(f"checkpoint root {root} does not exist (expected a folder holding iter_XXXXXXX checkpoints)")
    return sorted(int(m.group(1)) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR_RE.match(p.name)))


def load_registry(folder: Path = REGISTRY_DIR) -> dict[str, ModelEntry]:
    """All models registered in ``folder``'s YAML files, by name."""
    out: dict[str, ModelEntry] = {}
    known = {f.name for f in dataclasses.fields(ModelEntry)}
    for path in sorted(folder.glob("*.yaml")):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML ({exc})") from None
        for i, raw in enumerate(doc.get("models", [])):
            unknown = set(raw) - known
            if unknown:
                raise UserError(f"{path}: models[{i}] has unknown field(s) {sorted(unknown)}; expected {sorted(known)}")
            entry = ModelEntry(**raw)
            out[entry.name] = entry
    return out


def step_path(root: Path, step: int) -> Path:
    return root / step_dir(step)
