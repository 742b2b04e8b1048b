"""Shared pieces of every ``devupdate`` command module: errors as one line, JSON and table output,
progress bars, settings and runtime. No commands here, so any command module can import it."""

from __future__ import annotations

import functools
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import click

from devupdate import numbers
from devupdate.errors import DevupdateError
from devupdate.packages.errors import PackageError
from devupdate.settings import Settings

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar  # what click.progressbar() returns


def actor() -> str:
    """Who the audit trail names for a CLI action."""
    return os.environ.get("DEVUPDATE_ACTOR") or f"cli:{getpass.getuser()}"


def settings() -> Settings:
    return Settings.load()


_open_runtime: Callable[..., Any] | None = None


def set_runtime_opener(opener: Callable[..., Any]) -> None:
    """The ``devupdate`` command (the top of the house) says how an installation is opened, so this
    kit, which every feature's commands import, imports none of them."""
    global _open_runtime
    _open_runtime = opener


def runtime(*, upgrade: bool = False):
    """The installation named by the settings, opened (database connected, schema current)."""
    if _open_runtime is None:
        raise RuntimeError("no runtime opener: commands run through devupdate.cli.main")
    return _open_runtime(settings(), upgrade=upgrade)


#: exit status after the reader of our output went away (``devupdate … | head``), as for a program
#: the shell saw killed by SIGPIPE — not 1, which means "refused"
BROKEN_PIPE_STATUS = 141


class Main(click.Group):
    """The top command. Every error is one line, ``devupdate: error: …``: click's usage errors too
    (exit status 2, pointing at the command's ``--help``); and a closed pipe ends the output quietly."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        prog_name = prog_name or "devupdate"  # also under ``python -m devupdate``
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            status = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            sys.stdout.flush()  # a late EPIPE surfaces here, not as a traceback at exit
        except click.exceptions.NoArgsIsHelpError as exc:  # a group without its command: its help
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else _command_path(self, prog_name, args)
            click.echo(f"devupdate: error: {_one_line(exc.format_message())} (see '{where} --help')", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"devupdate: error: {_one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("devupdate: error: aborted", err=True)
            sys.exit(1)
        except BrokenPipeError:
            _quiet_stdout()
            sys.exit(BROKEN_PIPE_STATUS)
        sys.exit(status if isinstance(status, int) else 0)


def _command_path(group: click.Group, prog_name: str, args: Any) -> str:
    """``devupdate rules approve`` from the arguments (click raises option errors without a context)."""
    words = [prog_name]
    command: click.Command = group
    for arg in sys.argv[1:] if args is None else args:
        if not isinstance(command, click.Group) or arg.startswith("-"):
            if isinstance(command, click.Group):
                continue
            break
        found = command.commands.get(arg)
        if found is None:
            break
        words.append(arg)
        command = found
    return " ".join(words)


def _one_line(message: str) -> str:
    """click's message as a clause: one line, lower-case start, no final full stop."""
    text = re.sub(r"\s+", " ", message).strip().removesuffix(".")
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush does not complain either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def fail(message: str) -> None:
    click.echo(f"devupdate: error: {message}", err=True)
    sys.exit(1)


def handle_errors(func: Callable) -> Callable:
    """Turn refusals into one line on stderr and exit status 1 — never a traceback."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (DevupdateError, PackageError) as exc:
            fail(exc.message)
        except BrokenPipeError:  # the reader went away (``| head``): nothing to say to it
            _quiet_stdout()
            sys.exit(BROKEN_PIPE_STATUS)
        except OSError as exc:
            fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
        except Exception as exc:  # database unreachable and the like: still one line
            import peewee

            if isinstance(exc, peewee.OperationalError | peewee.InterfaceError):
                fail(f"database: {str(exc).strip().splitlines()[0]} (check DEVUPDATE_DATABASE_URL)")
            raise
    return wrapper


class WholeNumber(click.IntRange):
    """click's ``IntRange`` reading ASCII digits only (click's ``INT`` takes ``٤`` for 4, and ``1_0``)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            try:
                value = numbers.whole(value.strip())
            except ValueError:
                self.fail(f"{value[:40]!r} is not a whole number (digits 0-9)", param, ctx)
        return super().convert(value, param, ctx)


class DecimalNumber(click.FloatRange):
    """click's ``FloatRange`` reading ASCII ``digits[.digits]`` only: no other scripts' digits, no
    ``nan`` or ``inf`` (which ``FloatRange`` lets through its bounds)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            try:
                value = numbers.decimal(value.strip())
            except ValueError:
                self.fail(f"{value[:40]!r} is not a number (digits 0-9, optionally with a '.')", param, ctx)
        return super().convert(value, param, ctx)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def print_table(rows: Iterable[dict[str, Any]], columns: list[str]) -> None:
    rows = list(rows)
    if not rows:
        click.echo("(none)")
        return
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def print_record(data: dict[str, Any]) -> None:
    width = max(len(k) for k in data)
    for key, value in data.items():
        shown = json.dumps(value, default=str) if isinstance(value, list | dict) else ("" if value is None else value)
        click.echo(f"{key.ljust(width)} : {shown}")


class Progress:
    """A byte progress bar on a terminal, silent otherwise (scripts, CI, pipes)."""

    def __init__(self, label: str):
        self.label = label
        self.bar: ProgressBar[int] | None = None
        self.enabled = sys.stderr.isatty()

    def total(self, length: int) -> None:
        if self.enabled and length > 1 << 20:
            self.bar = click.progressbar(length=length, label=self.label, file=sys.stderr, show_pos=False)
            self.bar.__enter__()

    def advance(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def read_password(from_stdin: bool) -> str:
    """One line from standard input (scripts), else a hidden prompt asked twice (people)."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise DevupdateError("no password on standard input", code="no-password")
        return password
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)
