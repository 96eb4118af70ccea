"""The launch config: which stage configs make the study, and how jobs ask the cluster for room.

A launch YAML names one config file per stage (a relative path is looked up in the current
directory, then among the packaged configs, as on the command line) and has a ``cluster:`` section::

    data: configs/data/paper.yaml
    train: configs/paper/sae.yaml
    features: configs/features.yaml     # null: the stage's defaults
    compare: configs/compare.yaml
    site: configs/site.yaml
    cluster: {partition: gpu, gpus_per_job: 1, cpus_per_job: 8, time: "12:00:00"}
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmjp_ckpt.config import build, read_yaml
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.resources import config_path

EXECUTORS = ("local", "slurm", "debug")
PARTITION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# SLURM's time formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS
_TIME_RE = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?$")


def time_minutes(value: str | int, where: str = "cluster.time") -> int:
    """A SLURM time limit (``"12:00:00"``, ``"1-00:00:00"``, ``"90"`` or minutes) in minutes."""
    expected = f"{where}={value!r}: expected a SLURM time such as '04:00:00' or '1-00:00:00'"
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise UserError(expected)
    m = _TIME_RE.match(str(value).strip())
    if not m:
        raise UserError(expected)
    days, a, b, c = m.groups()
    nums = [int(x) for x in (a, b, c) if x is not None]
    if days is not None:  # D-HH[:MM[:SS]]
        hh, mm, ss = (nums + [0, 0])[:3]
        minutes, secs = int(days) * 1440 + hh * 60 + mm, ss
        bad = hh > 23 or mm > 59 or ss > 59
    elif len(nums) == 3:  # HH:MM:SS
        minutes, secs, bad = nums[0] * 60 + nums[1], nums[2], nums[1] > 59 or nums[2] > 59
    elif len(nums) == 2:  # MM:SS
        minutes, secs, bad = nums[0], nums[1], nums[1] > 59
    else:  # MM
        minutes, secs, bad = nums[0], 0, False
    total = minutes + (1 if secs else 0)
    if bad or total < 1:
        raise UserError(f"{where}={value!r}: expected a positive SLURM time such as '04:00:00'")
    return total


@dataclass(frozen=True)
class ClusterConfig:
    """What each job asks for. SLURM reads all of it; ``local`` GPUs, time and max_parallel."""

    partition: str | None = None  # SLURM partition (null: the cluster's default one)
    account: str | None = None  # SLURM account to charge (null: the user's default)
    gpus_per_job: int = 1  # GPUs per job (0: CPU only)
    cpus_per_job: int = 4  # CPUs per job
    mem_gb: float | None = None  # memory per job (null: the partition's default)
    time: str = "04:00:00"  # time limit per job; on timeout the job requeues and resumes
    max_parallel: int = 1  # local: jobs at a time; SLURM: array tasks running at a time
    max_requeues: int = 3  # timeouts / preemptions a job may requeue after
    gpu_memory: str | None = None  # each job's GPU memory ("80GiB"): train jobs = the planner's passes
    sbatch: dict[str, Any] = field(default_factory=dict)  # extra sbatch options {qos: high}
    setup: list[str] = field(default_factory=list)  # shell lines before each job (module load)

    def __post_init__(self) -> None:
        if self.partition is not None and not PARTITION_RE.match(str(self.partition)):
            raise UserError(f"cluster.partition={self.partition!r}: expected a SLURM "
                            "partition name (letters, digits, '_', '-', '.')")
        for name in ("gpus_per_job", "cpus_per_job", "max_parallel", "max_requeues"):
            v = getattr(self, name)
            low = 0 if name in ("gpus_per_job", "max_requeues") else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise UserError(f"cluster.{name}={v!r}: expected an integer >= {low}")
        mem = self.mem_gb
        if mem is not None and (not isinstance(mem, (int, float)) or mem <= 0):
            raise UserError(f"cluster.mem_gb={self.mem_gb!r}: expected a positive number or null")
        if not (isinstance(self.sbatch, dict) and all(isinstance(k, str) for k in self.sbatch)):
            raise UserError(f"cluster.sbatch={self.sbatch!r}: expected a mapping of sbatch options")
        if not isinstance(self.setup, list) or not all(isinstance(s, str) for s in self.setup):
            raise UserError(f"cluster.setup={self.setup!r}: expected a list of shell lines")
        time_minutes(self.time)
        if self.gpu_memory is not None:
            from llmjp_ckpt.saes.plan import parse_size

            parse_size(self.gpu_memory, "cluster.gpu_memory")

    @property
    def timeout_min(self) -> int:
        return time_minutes(self.time)


@dataclass(frozen=True)
class LaunchConfig:
    """The study as a job graph: one config file per stage and the cluster settings."""

    data: str  # configs/data/<name>.yaml
    train: str  # configs/<paper|grid|demo>/<name>.yaml
    features: str | None = None  # configs/features.yaml (null: defaults)
    compare: str | None = None  # configs/compare.yaml (null: defaults)
    site: str | None = None  # configs/site.yaml (null: defaults)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self) -> None:
        for name in ("data", "train", "features", "compare", "site"):
            v = getattr(self, name)
            if v is None and name in ("data", "train"):
                raise UserError(f"{name}: expected the path of the {name} stage's config")
            if v is not None and not Path(v).is_file():
                raise UserError(f"{name}={v!r}: config file not found")

    def stage_file_text(self, name: str) -> str | None:
        """The text of stage ``name``'s config file (what a job's config hash covers)."""
        path = getattr(self, name)
        return None if path is None else Path(path).read_text(encoding="utf-8")


def load_launch(path: str | Path) -> LaunchConfig:
    """The launch config at ``path``, stage paths made absolute."""
    path = config_path(path)
    data = read_yaml(path)
    cluster = data.pop("cluster", None) or {}
    cl = build(ClusterConfig, cluster, f"{path}: cluster")
    for name in ("data", "train", "features", "compare", "site"):
        if isinstance(data.get(name), str):
            data[name] = str(config_path(Path(data[name]).expanduser()).resolve())
    try:
        return build(LaunchConfig, data | {"cluster": cl}, str(path))
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def check_partition(cluster: ClusterConfig) -> None:
    """On a SLURM host (``sinfo`` found), the partition must be one of the cluster's."""
    if cluster.partition is None or shutil.which("sinfo") is None:
        return
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return  # sinfo present but not answering: sbatch will judge
    names = {line.strip().rstrip("*") for line in out.splitlines() if line.strip()}
    if names and cluster.partition not in names:
        raise UserError(f"cluster.partition={cluster.partition!r}: not a partition of this cluster "
                        f"(sinfo lists {', '.join(sorted(names))})")


def replace_cluster(cfg: LaunchConfig, **changes: Any) -> LaunchConfig:
    """``cfg`` with cluster fields changed (validated again)."""
    return dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, **changes))
