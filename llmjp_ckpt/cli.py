"""The ``llmjp-ckpt`` command line.

Each subcommand lives in ``llmjp_ckpt/commands/<name>.py`` and defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``; heavy imports stay inside ``run`` so that
``--help`` is instant. A :class:`~llmjp_ckpt.errors.UserError` becomes one line on stderr and
exit code 2; so does an ``OSError`` (set ``LLMJP_CKPT_DEBUG=1`` for its traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from llmjp_ckpt.errors import UserError

# Order shown in --help: the pipeline's order.
COMMANDS = [
    "toy",
    "checkpoints",
    "inspect",
    "prepare-data",
    "plan",
    "train",
    "features",
    "label",
    "match",
    "compare",
    "sizes",
    "site",
    "upload",
    "export",
    "launch",
    "status",
    "import-peer",
    "crosscoder",
    "demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmjp-ckpt",
        description="Sparse autoencoders across LLM-jp-3 training checkpoints.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        mod = importlib.import_module(f"llmjp_ckpt.commands.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"llmjp-ckpt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # unreadable/unwritable paths, a full disk: one line, not a traceback
        if os.environ.get("LLMJP_CKPT_DEBUG"):
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"llmjp-ckpt {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
