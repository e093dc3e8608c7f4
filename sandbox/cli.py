"""The one command-line entry point: `sandbox <command>` (also `python -m sandbox <command>`).

Each command lives in its own module under `sandbox/commands/` with `add_arguments(parser)` and
`run(args) -> int`. Options and positional arguments may come in any order. Whatever a user can get
wrong ends in one line on stderr naming the file, key or argument, and a non-zero exit status:

    2    bad input: an argument, an override, a config file, a path (ValueError, TypeError, OSError)
    1    the run failed or could not start now: training diverged, the run directory is in use
    130  interrupted (Ctrl-C)

`--debug` (anywhere on the line) or `SANDBOX_DEBUG=1` shows the traceback instead. Modules are imported
only when their command runs, so `sandbox --help` is fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings

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


class UsageError(Exception):
    """An argument argparse refused (its message, without the usage block)."""


class Parser(argparse.ArgumentParser):
    """argparse, but an error is raised (and reported in one line by `main`) instead of exiting."""

    def error(self, message):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="sandbox", description="Memory Mosaics sandbox.",
                    epilog="--debug (anywhere) shows the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text)
    return parser


def exit_status(err: BaseException) -> int | None:
    """The exit status for an error a user can cause; None for a bug (which keeps its traceback)."""
    from sandbox.io import DirectoryLockedError

    if isinstance(err, (FloatingPointError, DirectoryLockedError)):
        return 1
    if isinstance(err, (UsageError, ValueError, TypeError, OSError)):
        return 2
    if isinstance(err, KeyboardInterrupt):
        return 130
    return None


def describe(err: BaseException) -> str:
    """One line: an OSError as 'FILE: reason', anything else as its message."""
    if isinstance(err, KeyboardInterrupt):
        return "interrupted"
    if isinstance(err, OSError) and err.filename and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return " ".join(str(err).split()) or type(err).__name__


@contextlib.contextmanager
def _one_line_warnings(prog: str):
    with warnings.catch_warnings():
        original = warnings.formatwarning
        warnings.formatwarning = lambda message, *args, **kwargs: f"{prog}: warning: {message}\n"
        try:
            yield
        finally:
            warnings.formatwarning = original


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv or bool(os.environ.get("SANDBOX_DEBUG"))
    argv = [a for a in argv if a != "--debug"]
    command = argv[0] if argv and argv[0] in COMMANDS else None
    prog = f"sandbox {command}" if command else "sandbox"
    try:
        with _one_line_warnings(prog):
            if command is None:
                build_parser().parse_args(argv)  # --help, or an unknown command: argparse explains
                build_parser().print_help()
                return 0
            # Import only the module of the command asked for, then let it declare its arguments.
            module = importlib.import_module(COMMANDS[command][0])
            sub = Parser(prog=prog, description=COMMANDS[command][1])
            module.add_arguments(sub)
            return int(module.run(sub.parse_intermixed_args(argv[1:])) or 0)
    except (Exception, KeyboardInterrupt) as err:
        status = exit_status(err)
        if status is None or debug:
            raise
        hint = f" (see {prog} --help)" if isinstance(err, UsageError) else "  (--debug shows the traceback)"
        print(f"{prog}: error: {describe(err)}{hint}", file=sys.stderr)
        return status
