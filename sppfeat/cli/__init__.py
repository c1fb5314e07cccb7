"""Command-line interface: strings are parsed here, once (click parameter types, in
:mod:`.options`), into the typed settings the Python API takes; each command is a thin layer over
one API call. Every message goes to stderr as one line starting 'sppfeat: ' (data, such as
tables, goes to stdout).

The commands live by subject: :mod:`.features` (extract, regions, merge, backbones, info) and
:mod:`.classify` (train-svm, eval, predict). A new module of commands is one import at the end of
this file."""

from __future__ import annotations

import logging
import os
import re
import select
import signal
import sys

import click

from ..backbones import WeightsUnavailable
from ..features.interrupts import DiskFull, ExtractionInterrupted, WorkerFailed

PREFIX = "sppfeat: "
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for a Unix tool whose reader has gone


def say(message: str) -> None:
    """One line on stderr, with the tool's prefix."""
    click.echo(PREFIX + message, err=True)


class Failure(click.ClickException):
    """The end of a command: one line on stderr and an exit code (2: bad input, missing weights,
    mismatched files; 1: a worker died; 128 + signal: interrupted)."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def cli_wording(message: str) -> str:
    """An API message with the command line's names: overwrite=True -> --overwrite,
    levels=(2, 1) -> --levels 2,1, shard=(1, 3) -> --shard 1/3, protocol='all' -> --protocol all,
    max_side=2048 -> --max-side 2048, workers=N -> --workers N, shapes='exact' -> --exact."""
    options = {}
    for command in main.commands.values():
        for param in command.params:
            if isinstance(param, click.Option):
                options.setdefault(param.name, param)

    def flag(match: re.Match) -> str:
        option, value = options[match.group(1)], (match.group(2) or "").strip("'")
        if value in ("", "True"):
            return max(option.opts, key=len)
        if f"--{value}" in option.opts + option.secondary_opts:  # a pair of flags: --exact/--bucketed
            return f"--{value}"
        if value.startswith("("):  # a tuple, as the option's type writes it: 2,1 or 1/3
            items = [item.strip() for item in value[1:-1].split(",") if item.strip()]
            value = getattr(option.type, "separator", ",").join(items)
        return f"{max(option.opts, key=len)} {value}"

    names = "|".join(sorted(map(re.escape, options), key=len, reverse=True))
    return re.sub(rf"\b({names})=(True\b|'[^']*'|\([^)]*\)|N\b|FILE\b|-?\d+(?:\.\d+)?\b)?(?![\w'(])", flag,
                  message)


def stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (`sppfeat predict ... | head -2`)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no file descriptor (a test's capture)
        return False
    return any(events & select.POLLERR for _, events in poller.poll(0))


def leave_quietly() -> None:
    """End the process as a Unix tool does when its reader has gone: no message, exit 141. What is
    still buffered for stdout goes to the null device (Python's own flush at exit would fail)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(EXIT_PIPE_CLOSED)


class Commands(click.Group):
    """The command group: whatever stops a command (an error, Ctrl-C, a dead worker) ends as one
    line on stderr, never a traceback; a closed stdout stops it quietly."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (ValueError, WeightsUnavailable, FileNotFoundError, PermissionError) as exc:
            raise Failure(str(exc)) from None
        except ExtractionInterrupted as exc:
            raise Failure(str(exc), 128 + exc.signum) from None
        except (WorkerFailed, DiskFull) as exc:
            raise Failure(str(exc), 1) from None
        except OSError as exc:  # the machine, not the input: one line, exit 1
            if isinstance(exc, BrokenPipeError) and stdout_closed():
                leave_quietly()
            raise Failure(" ".join(str(exc).split()), 1) from None
        except KeyboardInterrupt:
            raise Failure("interrupted", 130) from None

    def main(self, args=None, prog_name=None, standalone_mode: bool = True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.ClickException as exc:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the last line
            message = exc.format_message()
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                message += f" (see: {exc.ctx.command_path} --help)"
            say(cli_wording(message))
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            say("interrupted")
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sppfeat")
def main():
    """Fixed-length SPP descriptors from images of any size, and linear SVMs on them."""
    logging.basicConfig(format=PREFIX + "%(message)s", level=logging.INFO, stream=sys.stderr)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # not its notes ("generated new fontManager")


from . import classify, detection, features  # noqa: E402,F401  (the commands register on `main`)
