"""The ``carget`` command. Subcommands load lazily so ``carget add`` pays only for what it
uses (start-up time counts: lima runs the tool once per file)."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from .. import __version__
from ..errors import CargetError
from ._signals import signals_as_ctrl_c

__all__ = ["main", "cli"]

#: subcommand name -> "module:attribute" under carget.cli
SUBCOMMANDS: dict[str, str] = {
    "add": "add:add",
    "car": "car:car",
    "cat": "get:cat",
    "get": "get:get",
    "cid": "cidcmd:cid",
    "serve": "serve:serve",
    "bench": "bench:bench",
    "demo": "demo:demo",
    "lima": "lima:lima",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*SUBCOMMANDS, "help"])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "help":
            return help_
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            mod = importlib.import_module(f"carget.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"carget.cli.{module}":
                return None
            raise
        cmd = getattr(mod, attr)
        assert isinstance(cmd, click.Command)
        return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
# the version given, not looked up: importlib.metadata cost ~40% of `carget --version`
@click.version_option(__version__, "-V", "--version", package_name="carget")
def cli() -> None:
    """carget: IPFS content without kubo: CIDs, CAR files, verified gateway fetching.

    `carget help COMMAND` (or `carget COMMAND --help`) describes a command. Shell
    completion: eval "$(_CARGET_COMPLETE=bash_source carget)" in ~/.bashrc
    (zsh_source in ~/.zshrc; fish_source for fish)."""


@click.command(name="help", context_settings={"ignore_unknown_options": True})
@click.argument("command", nargs=-1)
@click.pass_context
def help_(ctx: click.Context, command: tuple[str, ...]) -> None:
    """Describe COMMAND (e.g. `carget help get`, `carget help car ls`), or carget itself."""
    parent = ctx.parent
    assert parent is not None
    cmd: click.Command = cli
    where = parent
    for name in command:
        if not isinstance(cmd, click.Group):
            raise click.UsageError(f"{where.command_path} has no subcommand {name!r}")
        sub = cmd.get_command(where, name)
        if sub is None:
            raise click.UsageError(f"no such command: {name!r}")
        where = click.Context(sub, info_name=name, parent=where)
        cmd = sub
    click.echo(cmd.get_help(where))


def main(argv: list[str] | None = None) -> None:
    """Entry point: map carget's errors to their documented exit codes, one line each.
    SIGTERM and SIGHUP end a command as Ctrl-C does (exit 130, see :mod:`._signals`)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:
        args = ["--help"]  # asked for nothing: the help, on stdout, exit 0
    try:
        with signals_as_ctrl_c():
            code = cli.main(args=args, prog_name="carget", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)  # a command that ended with click's Exit(code)
    except click.exceptions.Abort:
        click.echo("carget: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("carget: interrupted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        # one line, naming the problem (click's default is a three-line usage block)
        where = f" {exc.ctx.command_path.removeprefix('carget').strip()}" if exc.ctx else ""
        click.echo(f"carget{where}: {exc.format_message()} (see --help)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"carget: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except CargetError as exc:
        click.echo(f"carget: {exc}", err=True)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as exc:
        # the system refused (a full disk, a file too large for it): one line, not a
        # traceback; what was being written is already removed by its own cleanup
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(f"carget: {exc.strerror or exc}{where}", err=True)
        sys.exit(1)


def run(argv: list[str]) -> Any:  # pragma: no cover - convenience for python -m
    return main(argv)
