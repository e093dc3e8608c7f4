"""The one command-line entry point: `sandbox <command>` (also `python -m sandbox <command>`).

Each command lives in its own module under `sandbox/commands/` with `add_arguments(parser)` and
`run(args) -> int`. Bad input (ValueError/TypeError) ends with a one-line error and exit
status 2. Modules are imported only when their command runs, so `sandbox --help` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# command name -> (module, one-line help)
COMMANDS = {
    "demo": ("sandbox.commands.demo", "fit the reference memory to a noisy 1-D function and plot the fits"),
    "memories": ("sandbox.commands.memories", "list the registered memories"),
    "tasks": ("sandbox.commands.tasks", "list the registered tasks with their fields and defaults"),
    "train": ("sandbox.commands.train", "train a model on a task with dotted overrides (model.d=128 ...)"),
    "sample": ("sandbox.commands.sample", "print text sampled from a model trained on text (task=text)"),
    "figures": ("sandbox.commands.figures", "reproduce the published figures (results as JSON, then plots)"),
    "plot": ("sandbox.commands.plot", "overlay the learning curves of run directories (PNG, PDF, JSON)"),
    "sweep": ("sandbox.commands.sweep", "train a grid of overrides x seeds; table of mean, std and CI; plot"),
    "notebooks": ("sandbox.commands.notebooks", "rebuild the teaching notebooks from their sources and execute them"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sandbox", description="Memory Mosaics sandbox.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    # Import only the module of the command asked for, then let it declare its arguments.
    if argv and argv[0] in COMMANDS:
        module = importlib.import_module(COMMANDS[argv[0]][0])
        sub = argparse.ArgumentParser(prog=f"sandbox {argv[0]}", description=COMMANDS[argv[0]][1])
        module.add_arguments(sub)
        args = sub.parse_args(argv[1:])
        try:
            return int(module.run(args) or 0)
        except (ValueError, TypeError) as err:
            if os.environ.get("SANDBOX_DEBUG"):
                raise
            print(f"sandbox {argv[0]}: error: {err}  (SANDBOX_DEBUG=1 shows the traceback)", file=sys.stderr)
            return 2
    args = parser.parse_args(argv)  # --help, or an unknown command: argparse explains and exits
    parser.print_help()
    return 0
