"""Files that ship inside the package: the default configs and the model registry.

``llmjp_ckpt/configs/`` is package data (``pyproject.toml``), so an installed, non-editable copy
carries the study's configs and the checkpoint registry; the repository's ``configs/`` is a
symlink to it, so every documented path stays true in a clone. A config named by a relative
path that does not exist in the current folder is looked up there: ``--config paper/sae.yaml``
(or ``configs/paper/sae.yaml``) works from any folder once the package is installed.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
"""The packaged configs (``configs/`` in the repository is a symlink to this folder)."""
MODELS_DIR = CONFIG_DIR / "models"
"""The packaged checkpoint registry (``configs/models/*.yaml``)."""
REGISTRY_ENV = "LLMJP_CKPT_REGISTRY"
"""Extra registry YAML: folders or files, separated by ``os.pathsep``; later entries override."""


def config_path(path: str | Path) -> Path:
    """``path`` itself when it exists (or is absolute), else the packaged config of that name.

    A leading ``configs/`` is dropped before the packaged lookup, so the README's paths work from
    any folder. A name found nowhere comes back unchanged (its loader reports it missing).
    """
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    parts = p.parts[1:] if p.parts[:1] == ("configs",) else p.parts
    packaged = CONFIG_DIR.joinpath(*parts) if parts else CONFIG_DIR
    return packaged if packaged.is_file() else p


def registry_files() -> list[Path]:
    """Registry YAML files in load order: the packaged ones, then ``$LLMJP_CKPT_REGISTRY``'s."""
    files = sorted(MODELS_DIR.glob("*.yaml"))
    for item in filter(None, os.environ.get(REGISTRY_ENV, "").split(os.pathsep)):
        p = Path(item).expanduser()
        files.extend(sorted([*p.glob("*.yaml"), *p.glob("*.yml")]) if p.is_dir() else [p])
    return files
