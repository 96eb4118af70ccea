"""The run folder: one folder per experiment, one ``manifest.json`` recording every stage.

Each stage records its config (and its hash), the library versions, the checkpoints it used
and its status. A stage whose recorded status is ``done`` with the same config hash is skipped
when rerun; a changed config reruns it. All writes go through :mod:`llmjp_ckpt.atomic`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import re
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from filelock import FileLock

from llmjp_ckpt import atomic
from llmjp_ckpt.config import read_json
from llmjp_ckpt.errors import UserError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_LOCK = ".manifest.lock"  # held while the manifest is read, changed and written back
SHARED_ENV = "LLMJP_CKPT_SHARED_RUN"  # set in launched jobs: the launch cleaned the folder once
LIBRARIES = (
    "llmjp-ckpt", "torch", "transformer-lens", "transformers", "sae-lens", "sae-dashboard",
    "datasets", "huggingface_hub", "plotly",
)


def library_versions() -> dict[str, str]:
    """Installed versions of the stack, for the manifest."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def config_hash(config: Any) -> str:
    """A stable hash of a config (dataclass, dict or anything JSON-serialisable)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    blob = json.dumps(config, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


class RunFolder:
    """A run folder and its manifest."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.environ.get(SHARED_ENV):  # a launched job: others write temporaries right now
            atomic.clean_temporaries(self.root)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def manifest(self) -> dict[str, Any]:
        """The manifest as a dict (an empty one for a new run)."""
        if not self.manifest_path.exists():
            return {"stages": {}}
        return read_json(self.manifest_path)

    def stage_record(self, name: str) -> dict[str, Any] | None:
        """What the manifest says of stage ``name`` (``None`` when never run)."""
        return self.manifest()["stages"].get(name)

    def is_done(self, name: str, config: Any) -> bool:
        """True when stage ``name`` finished with this very config."""
        st = self.stage_record(name)
        return bool(st) and st.get("status") == "done" and st.get("config_hash") == config_hash(config)

    def record(self, name: str, config: Any, status: str, **extra: Any) -> None:
        """Record a stage's status, config and the library versions.

        The read-modify-write runs under a file lock, so jobs sharing the run folder never lose
        each other's entries.
        """
        cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
        entry = {
            "status": status,
            "config": cfg,
            "config_hash": config_hash(config),
            "versions": library_versions(),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **extra,
        }
        with FileLock(str(self.root / MANIFEST_LOCK)):
            man = self.manifest()
            man["stages"][name] = entry
            atomic.write_json(self.manifest_path, man)

    def stage(self, name: str, config: Any, *, force: bool = False,
              outputs: Iterable[Path] = (), **extra: Any) -> Stage:
        """The one stage skeleton: ``with run.stage("features", cfg, outputs=[p]) as st:``.

        ``st.skipped`` is true when the stage is recorded done with this config hash and every
        path in ``outputs`` exists (the body should then return early). Otherwise the stage is
        recorded ``running``, then ``done`` (with ``extra`` and whatever the body put in
        ``st.info``) or ``failed`` (with the error's line) when the body raises.
        """
        return Stage(self, name, config, force=force, outputs=tuple(outputs), extra=extra)

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)


class Stage:
    """One stage's run, made by :meth:`RunFolder.stage`."""

    def __init__(self, run: RunFolder, name: str, config: Any, *, force: bool,
                 outputs: tuple[Path, ...], extra: dict[str, Any]):
        self.run, self.name, self.config = run, name, config
        self.info: dict[str, Any] = dict(extra)
        self.skipped = (not force and run.is_done(name, config)
                        and all(Path(p).exists() for p in outputs))

    def __enter__(self) -> Self:
        if self.skipped:
            log.info("%s: done with this config, skipped", self.name)
        else:
            self.run.record(self.name, self.config, "running", **self.info)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if self.skipped:
            return False
        if exc is None:
            self.run.record(self.name, self.config, "done", **self.info)
        else:
            line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.run.record(self.name, self.config, "failed", **self.info, error=line[:500])
        return False


STEP_DIR_RE = re.compile(r"^iter_(\d{7,})$")


def step_dir(step: int) -> str:
    """The study's checkpoint folder name: ``iter_0000010`` for step 10."""
    return f"iter_{int(step):07d}"


def parse_step_dir(name: str) -> int | None:
    """The step of a checkpoint folder name (``iter_0000010`` -> 10), else None."""
    m = STEP_DIR_RE.match(name)
    return int(m.group(1)) if m else None


def sae_folders(run: str | Path) -> list[tuple[int, str, Path]]:
    """``(step, sae_id, folder)`` of every finished SAE under ``RUN/saes/iter_*/<sae_id>/``.

    Finished SAEs are renamed into place whole, so a folder holding SAELens's ``cfg.json`` is
    one; each reader checks the files it needs. Temporaries (``.tmp-*``) and the resumable
    ``_work`` area are skipped.
    """
    from sae_lens.constants import SAE_CFG_FILENAME

    root = Path(run) / "saes"
    out = []
    for sd in sorted(root.glob("iter_*")) if root.is_dir() else []:
        m = STEP_DIR_RE.match(sd.name)
        if not m or not sd.is_dir():
            continue
        for sae in sorted(sd.iterdir()):
            if not sae.name.startswith(".") and (sae / SAE_CFG_FILENAME).is_file():
                out.append((int(m.group(1)), sae.name, sae))
    if not out:
        raise UserError(
            f"{root}: no SAEs found (expected iter_XXXXXXX/<sae_id>/ in SAELens format; run `llmjp-ckpt train` first)"
        )
    return out
