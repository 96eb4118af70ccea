"""``llmjp-ckpt status``: every stage and job of a launched run, and what a relaunch would run."""

from __future__ import annotations

import argparse

HELP = ("Show each stage and job of a run (done, running, failed with its log's last line, "
        "not started) and what a relaunch would run.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder (RUN)")
    p.add_argument("--config", default=None,
                   help="launch YAML (default: the copy the last launch left in RUN/logs/)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from llmjp_ckpt.errors import UserError
    from llmjp_ckpt.launch.graph import LIVE
    from llmjp_ckpt.launch.status import last_launch, launch_config_of, manifest_stages, status_rows

    if not Path(args.run).is_dir():
        raise UserError(f"{args.run}: run folder not found")
    cfg = launch_config_of(args.run, args.config)
    last = last_launch(args.run)
    if last:
        print(f"last launch: {last.get('executor')} at {last.get('submitted')}")
    print("stages (manifest):")
    for name, st in manifest_stages(args.run).items():
        err = f" ({st['error']})" if st.get("error") else ""
        print(f"  {name:<10} {st.get('status')}{err}  {st.get('updated', '')}")
    rows = status_rows(args.run, cfg)
    width = max(len(r["job"]) for r in rows)
    print("jobs:")
    for r in rows:
        detail = f"  {r['detail']}" if r["detail"] else ""
        print(f"  {r['job']:<{width}}  {r['state']}{detail}")
    again = [r["job"] for r in rows if r["relaunch"]]
    if any(r["state"] in LIVE for r in rows):
        print("jobs are queued or running: a relaunch is refused until they end")
    print("a relaunch would run: " + (", ".join(again) if again else "nothing (all done)"))
    return 0
