"""Upload a run's SAEs to the Hugging Face Hub in SAELens format, through SAELens.

Every ``RUN/saes/iter_{step:07d}/<sae_id>/`` goes to the repo folder of the same name via
``sae_lens.upload_saes_to_huggingface`` (cfg.json, weights, sparsity, runner_cfg). SAELens
uploads only those four files and creates the repo without a ``private`` flag, so we add what
it leaves out through the Hub API itself: the repo is created private *first* when asked
(SAELens then finds it and skips its own ``create_repo``), and one extra commit adds each
SAE's ``metrics.json`` and the model card. A registry entry in SAELens' ``pretrained_saes.yaml``
schema is merged into ``RUN/pretrained_saes.yaml`` (or a given path), never into the package.

The token comes only from ``HF_TOKEN`` or the Hugging Face login, read by ``huggingface_hub``
itself: this module never reads, passes, prints or writes it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import CommitOperationAdd, HfApi

from llmjp_ckpt import atomic
from llmjp_ckpt.config import read_json
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.runfolder import sae_folders
from llmjp_ckpt.saes.normalisation import mode_of
from llmjp_ckpt.weights import check_sae_weights, tensor_shapes

log = logging.getLogger(__name__)
SAELENS_FILES = ("cfg.json", "sae_weights.safetensors", "sparsity.safetensors", "runner_cfg.json")
REQUIRED = ("cfg.json", "sae_weights.safetensors", "sparsity.safetensors", "metrics.json")
# What SAELens does not upload, added by our own commit: the metrics and the dead-latent counts
# (saes.dead.FIRING_FILE, the one definition of a dead latent), when the folder has them.
EXTRA_FILES = ("metrics.json", "firing_counts.safetensors")
_SHOWN = {"checkpoint_step", "d_sae", "k", "step"}  # already columns of the metrics table
_PREFERRED = ("explained_variance", "fvu", "mse", "cosine", "l0", "dead_fraction", "dense_fraction",
              "ce_loss_score", "kl_div_score")
REGISTRY_NAME = "pretrained_saes.yaml"  # written into the run folder unless a path is given


@dataclass(frozen=True)
class SAEFolder:
    """One SAE of the run and where it goes in the repo."""

    step: int
    sae_id: str
    folder: Path
    cfg: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def repo_path(self) -> str:
        return f"{self.folder.parent.name}/{self.sae_id}"

    @property
    def normalisation(self) -> str:
        return mode_of(self.cfg)

    def files(self) -> list[Path]:
        return [self.folder / n for n in (*SAELENS_FILES, *EXTRA_FILES) if (self.folder / n).is_file()]


def collect_saes(run: str | Path) -> list[SAEFolder]:
    """Every SAE folder of the run, validated: missing files or bad JSON are a :class:`UserError`."""
    out = []
    for step, sae_id, folder in sae_folders(run):
        missing = [n for n in REQUIRED if not (folder / n).is_file()]
        if missing:
            raise UserError(f"{folder}: missing {', '.join(missing)} (expected a finished SAE from `llmjp-ckpt train`)")
        check_sae_weights(folder)  # a truncated / corrupt weights file: one line, before any upload
        tensor_shapes(folder / "sparsity.safetensors", "SAELens' sparsity.safetensors")
        out.append(
            SAEFolder(
                step,
                sae_id,
                folder,
                _read_json(folder / "cfg.json"),
                _read_json(folder / "metrics.json"),
            )
        )
    return out


def _read_json(path: Path) -> dict[str, Any]:
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a JSON object")
    return obj


def _model_name(saes: list[SAEFolder]) -> str:
    names = {str(s.cfg.get("metadata", {}).get("model_name") or "unknown") for s in saes}
    return ", ".join(sorted(names))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def model_card(saes: list[SAEFolder], repo_id: str) -> str:
    """README.md for the repo: model, steps, hook, normalisation, metrics, how to load."""
    hooks = sorted({str(s.cfg.get("metadata", {}).get("hook_name")) for s in saes})
    numeric = {k for s in saes for k, v in s.metrics.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)} - _SHOWN
    keys = [k for k in _PREFERRED if k in numeric] + sorted(numeric - set(_PREFERRED))
    head = ["checkpoint step", "SAE id", "normalisation", "d_sae", "k", *keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in sorted(saes, key=lambda s: (s.step, s.sae_id)):
        row = [s.step, f"`{s.repo_path}`", s.normalisation, s.cfg.get("d_sae"), s.cfg.get("k"),
               *[s.metrics.get(k, "") for k in keys]]
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    example = saes[0].repo_path
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(library_name="saelens", tags=["sparse-autoencoder", "llm-jp"])
    body = "\n".join([
        f"# Sparse autoencoders across the training checkpoints of {_model_name(saes)}", "",
        f"- **Model**: {_model_name(saes)}",
        f"- **Checkpoint steps**: {', '.join(str(x) for x in sorted({s.step for s in saes}))}",
        f"- **Hook**: {', '.join(f'`{h}`' for h in hooks)}",
        (f"- **Normalisation modes** (per token, before the SAE): "
         f"{', '.join(sorted({s.normalisation for s in saes}))}"),
        (f"- **SAEs**: {len(saes)}, one folder per `iter_XXXXXXX/<sae_id>` (SAELens format: cfg.json, "
         "sae_weights.safetensors, sparsity.safetensors, runner_cfg.json, plus metrics.json "
         "and firing_counts.safetensors, the dead-latent counts)"), "",
        "## Metrics", "", *lines, "",
        "## Loading", "",
        "```python",
        "from sae_lens import SAE",
        "import llmjp_ckpt  # registers the per-token-normalised TopK architecture (topk_token_norm)",
        "",
        f'sae = SAE.from_pretrained("{repo_id}", "{example}")',
        "```", "",
        ("SAEs whose `cfg.json` architecture is `topk_token_norm` (per-token normalised input) need "
         "`import llmjp_ckpt` first, which registers that architecture with SAELens."), "",
    ])
    # the front matter is huggingface_hub's own (ModelCardData), parsed back by ModelCard
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def registry_entry(saes: list[SAEFolder], repo_id: str) -> dict[str, Any]:
    """One release in SAELens' ``pretrained_saes.yaml`` schema (release name = repo id)."""
    entries = []
    for s in sorted(saes, key=lambda s: (s.step, s.sae_id)):
        e: dict[str, Any] = {"id": s.repo_path, "path": s.repo_path}
        for src, dst in (("l0", "l0"), ("explained_variance", "variance_explained")):
            if isinstance(s.metrics.get(src), (int, float)):
                e[dst] = float(s.metrics[src])
        entries.append(e)
    return {repo_id: {"repo_id": repo_id, "model": _model_name(saes), "conversion_func": None,
                      "links": {"model": f"https://huggingface.co/{repo_id}"}, "saes": entries}}


def write_registry(entry: dict[str, Any], path: Path) -> Path:
    """Merge ``entry`` into the YAML registry at ``path`` (other releases kept)."""
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML ({exc.__class__.__name__})") from exc
    data.update(entry)
    header = ("# SAE releases in SAELens' pretrained_saes.yaml schema, one per Hub repo, written by\n"
              "# `llmjp-ckpt upload` (merge into sae_lens/pretrained_saes.yaml to register them).\n")
    return atomic.write_text(path, header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def upload_plan(saes: list[SAEFolder], repo_id: str) -> list[tuple[str, str]]:
    """(local file, destination) for every file that goes to the Hub."""
    plan = [(str(f), f"hf://{repo_id}/{s.repo_path}/{f.name}") for s in saes for f in s.files()]
    plan.append(("(model card)", f"hf://{repo_id}/README.md"))
    return plan


def upload_run(run: str | Path, repo_id: str, *, private: bool = False, dry_run: bool = False,
               revision: str = "main", registry_path: str | Path | None = None) -> list[tuple[str, str]]:
    """Upload every SAE of ``run`` to ``repo_id``; with ``dry_run`` only print the plan."""
    from huggingface_hub import get_token

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise UserError(f"--repo-id {repo_id!r}: expected 'owner/name'")
    saes = collect_saes(run)
    plan = upload_plan(saes, repo_id)
    card = model_card(saes, repo_id)
    entry = registry_entry(saes, repo_id)
    reg = Path(registry_path) if registry_path else Path(run) / REGISTRY_NAME
    if dry_run:
        for src, dst in plan:
            print(f"{src} -> {dst}")
        print(f"(registry entry) -> {reg}  [release {repo_id!r}, {len(saes)} SAEs]"
              + ("  [repo would be created private]" if private else ""))
        return plan
    if get_token() is None:
        raise UserError("no Hugging Face token: set HF_TOKEN or run `huggingface-cli login`")
    from sae_lens import upload_saes_to_huggingface

    api = HfApi()
    if private:  # SAELens' create_repo takes no `private`: create it ourselves, first
        api.create_repo(repo_id, private=True, exist_ok=True)
    upload_saes_to_huggingface({s.repo_path: s.folder for s in saes}, repo_id,
                               hf_revision=revision, add_default_readme=False)
    ops = [CommitOperationAdd(f"{s.repo_path}/{n}", str(s.folder / n))
           for s in saes for n in EXTRA_FILES if (s.folder / n).is_file()]
    ops.append(CommitOperationAdd("README.md", card.encode("utf-8")))
    api.create_commit(repo_id, operations=ops,
                      commit_message="Add metrics.json, firing counts and model card",
                      revision=revision)
    write_registry(entry, reg)
    log.info("uploaded %d SAEs to %s; registry entry in %s", len(saes), repo_id, reg)
    return plan
