"""The study as a job graph on SLURM, local processes or in-process, through submitit.

``plan`` lists the jobs, ``launch`` runs or submits what is not done yet, ``status`` reports
each job's state (``llmjp-ckpt launch`` / ``llmjp-ckpt status``).
"""

from llmjp_ckpt.launch.config import ClusterConfig, LaunchConfig, load_launch
from llmjp_ckpt.launch.executors import launch
from llmjp_ckpt.launch.graph import Job, plan, to_run
from llmjp_ckpt.launch.status import status_rows

__all__ = ["ClusterConfig", "Job", "LaunchConfig", "launch", "load_launch", "plan", "status_rows",
           "to_run"]
