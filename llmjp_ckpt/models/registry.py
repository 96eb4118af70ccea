"""The checkpoint registry: which models, which steps, where from.

The packaged ``llmjp_ckpt/configs/models/*.yaml`` (``configs/models/`` in the repository) come
first; files or folders named in ``$LLMJP_CKPT_REGISTRY`` add models or override them by name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from llmjp_ckpt.config import build
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.resources import MODELS_DIR, REGISTRY_ENV, registry_files
from llmjp_ckpt.runfolder import STEP_DIR_RE, step_dir

REGISTRY_DIR = MODELS_DIR  # the packaged registry
STEP_SOURCES = ("discover", "transformer_lens", "hub_refs")
LOADERS = ("adapter", "transformer_lens")
# A registered shape's keys (TransformerLens' names) -> the Hugging Face config.json key.
SHAPE_KEYS = {"d_model": "hidden_size", "n_layers": "num_hidden_layers", "n_heads": "num_attention_heads",
              "d_vocab": "vocab_size", "d_mlp": "intermediate_size", "n_kv_heads": "num_key_value_heads"}
SHAPE_REQUIRED = ("d_model", "n_layers", "n_heads", "d_vocab")


@dataclass
class ModelEntry:
    """One registered model and where its checkpoints come from."""

    name: str
    """Name used with ``load_model`` and ``HookedTransformer.from_pretrained``."""
    steps: list[int] | str = field(default_factory=list)
    """Registered training steps; ``"discover"``: the ``iter_*`` folders of the root;
    ``"transformer_lens"``: TransformerLens' own checkpoint list (Pythia, stanford-crfm);
    ``"hub_refs"``: the hub branches of ``hub_repo`` that ``revision_regex`` matches."""
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
    revision_regex: str | None = None
    """With ``steps: hub_refs``: a regex a hub branch of an intermediate checkpoint matches
    whole; its group ``step`` (else its first group) is the step (OLMo 2:
    ``stage1-step(?P<step>\\d+)-tokens\\d+B``)."""
    loader: str = "adapter"
    """``adapter``: this package's seam (Llama-shaped checkpoints by name, local folders of any
    architecture TransformerLens converts); ``transformer_lens``: TransformerLens' own loading
    path for a model it knows (``checkpoint_value``, or a hub ``revision``), untouched."""
    shape: dict[str, int] | None = None
    """The model's shape (``d_model``, ``n_layers``, ``n_heads``, ``d_vocab``; optionally
    ``d_mlp``, ``n_kv_heads``): every checkpoint's config.json is checked against it at load,
    and the planner uses it when no checkpoint is on disk."""

    def __post_init__(self) -> None:
        if self.shape is not None:
            bad = sorted(set(self.shape) - set(SHAPE_KEYS))
            missing = [k for k in SHAPE_REQUIRED if k not in self.shape]
            if bad or missing or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                     for v in self.shape.values()):
                raise UserError(f"model {self.name}: shape {self.shape!r}: expected positive ints for "
                                f"{', '.join(SHAPE_REQUIRED)} (optionally d_mlp, n_kv_heads)")
        if isinstance(self.steps, str) and self.steps not in STEP_SOURCES:
            raise UserError(f"model {self.name}: steps must be a list of ints or one of "
                            f"{', '.join(STEP_SOURCES)}, got {self.steps!r}")
        if self.loader not in LOADERS:
            raise UserError(f"model {self.name}: loader {self.loader!r}: expected one of "
                            f"{', '.join(LOADERS)}")
        if self.steps == "transformer_lens" and self.loader != "transformer_lens":
            raise UserError(f"model {self.name}: steps 'transformer_lens' need "
                            "loader: transformer_lens")
        if self.steps == "hub_refs":
            if not self.hub_repo or not self.revision_regex:
                raise UserError(f"model {self.name}: steps 'hub_refs' need hub_repo and "
                                "revision_regex")
            self.step_regex()
        if isinstance(self.steps, list):
            if any(not isinstance(s, int) or s < 0 for s in self.steps):
                raise UserError(f"model {self.name}: steps must be non-negative ints, got {self.steps}")
            if self.steps != sorted(set(self.steps)):
                raise UserError(f"model {self.name}: steps must be strictly increasing, got {self.steps}")

    def check_shape(self, cfg: dict, where: str) -> None:
        """A :class:`UserError` (one line) when a checkpoint's config.json is not this model's shape.

        Only the model cards' figures (``SHAPE_REQUIRED``) are checked: ``d_mlp`` / ``n_kv_heads``
        of most sizes are derived, not read from a config, so they serve the planner only."""
        for key in SHAPE_REQUIRED if self.shape else ():
            hf_key, want = SHAPE_KEYS[key], self.shape[key]
            got = cfg.get(hf_key)
            if got is not None and got != want:
                raise UserError(f"{where}: {hf_key}={got} but {self.name} has {key}={want}: expected a "
                                f"checkpoint of {self.name} (is the checkpoint root another model's?)")

    def root(self, override: str | Path | None = None) -> Path | None:
        """The local checkpoint root in force: argument, then environment, then config."""
        if override is not None:
            return Path(override)
        if self.root_env and os.environ.get(self.root_env):
            return Path(os.environ[self.root_env])
        return Path(self.local_root) if self.local_root else None

    def step_regex(self) -> re.Pattern[str]:
        """``revision_regex`` compiled; a UserError when it is no regex or has no group."""
        try:
            rx = re.compile(str(self.revision_regex))
        except re.error as exc:
            raise UserError(f"model {self.name}: revision_regex {self.revision_regex!r}: not a "
                            f"regular expression ({exc})") from None
        if rx.groups < 1:
            raise UserError(f"model {self.name}: revision_regex {self.revision_regex!r}: expected "
                            "a group holding the step, e.g. step(?P<step>\\d+)")
        return rx

    def hub_revision(self, step: int | None) -> str:
        """The hub revision of ``step`` (``main`` for the final model)."""
        if step is None or step == self.final_step:
            return "main"
        if self.steps == "hub_refs":
            revs = hub_revision_steps(self)[0]
            if step not in revs:
                raise UserError(f"step {step} is not among the hub revisions of {self.name}: "
                                f"available steps are {sorted(revs)}")
            return revs[step]
        if not self.revision_pattern:
            raise UserError(f"model {self.name}: no revision_pattern for intermediate step {step}")
        return self.revision_pattern.format(step=step)


_REFS: dict[tuple[str, str, bool], tuple[list[str], str]] = {}  # one listing per process


def hub_refs(repo_id: str) -> tuple[list[str], str]:
    """The branch names of a hub model repo and where they were read: the hub
    (``huggingface_hub.list_repo_refs``) when online, else the local hub cache's ``refs/``
    folder (one file per branch, named like it; a branch with ``/`` is a sub-folder)."""
    from huggingface_hub import constants

    offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")
    cache = Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)
    key = (repo_id, str(cache), bool(offline))
    if key not in _REFS:
        _REFS[key] = _read_refs(repo_id, cache, bool(offline))
    return _REFS[key]


def _read_refs(repo_id: str, cache: Path, offline: bool) -> tuple[list[str], str]:
    if not offline:
        from huggingface_hub import HfApi

        try:
            return [b.name for b in HfApi().list_repo_refs(repo_id).branches], "hub"
        except Exception as exc:  # noqa: BLE001  no network, no access: fall back to the cache
            reason = f"hub unreachable ({exc.__class__.__name__})"
    else:
        reason = "offline"
    refs = cache / f"models--{repo_id.replace('/', '--')}" / "refs"
    files = refs.rglob("*") if refs.is_dir() else []
    names = sorted(str(p.relative_to(refs)) for p in files if p.is_file())
    return names, f"local hub cache {refs} ({reason})"


def hub_revision_steps(entry: ModelEntry) -> tuple[dict[int, str], str]:
    """``{step: revision}`` of the hub branches ``entry.revision_regex`` matches, and where the
    branches were read; a UserError when it matches none."""
    rx = entry.step_regex()
    names, source = hub_refs(str(entry.hub_repo))
    out: dict[int, str] = {}
    for name in names:
        m = rx.fullmatch(name)
        if m:
            out[int(m.group("step") if "step" in rx.groupindex else m.group(1))] = name
    if not names:
        raise UserError(f"model {entry.name}: no revisions of {entry.hub_repo} found in {source}: "
                        "expected its branches (go online once, or download a revision)")
    if not out:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "") if names else "none"
        raise UserError(f"model {entry.name}: revision_regex {entry.revision_regex!r} matches none "
                        f"of the {len(names)} revisions of {entry.hub_repo} ({shown}) read from "
                        f"{source}: expected branch names with the step in them")
    return dict(sorted(out.items())), source


def discover_steps(root: Path) -> list[int]:
    """Steps of the ``iter_XXXXXXX`` folders under ``root``, sorted."""
    if not root.is_dir():
        raise UserError(f"checkpoint root {root} does not exist (expected a folder holding iter_XXXXXXX checkpoints)")
    return sorted(int(m.group(1)) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR_RE.match(p.name)))


def load_registry(folder: Path | None = None) -> dict[str, ModelEntry]:
    """Registered models by name: ``folder``'s YAML files, or (default) the packaged registry
    followed by ``$LLMJP_CKPT_REGISTRY``'s files, a later entry replacing one of the same name."""
    out: dict[str, ModelEntry] = {}
    files = sorted(Path(folder).glob("*.yaml")) if folder is not None else registry_files()
    for path in files:
        if not path.is_file():
            raise UserError(f"{path} (from ${REGISTRY_ENV}): not found; expected a YAML file "
                            "or a folder of them with a 'models:' list")
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        models = doc.get("models", []) if isinstance(doc, dict) else None
        if not isinstance(models, list):
            raise UserError(f"{path}: expected a mapping with a 'models:' list of model entries")
        for i, raw in enumerate(models):
            entry = build(ModelEntry, raw, f"{path}: models[{i}]")
            out[entry.name] = entry
    return out


def step_path(root: Path, step: int) -> Path:
    return root / step_dir(step)
