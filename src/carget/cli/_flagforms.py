"""The forms people type flags in, taken before click parses them.

* ``--digest sha512 FILE`` / ``--raw-leaves true FILE``: an optional-value flag followed by
  one of its values as a separate word. kubo's form is ``--digest=sha512``; a bare
  ``--digest`` means its default and never swallows the next word. The separate word is
  taken as the value when that is unambiguous (no file of that name exists); when a file
  of that name does exist, the user is told which two forms to pick from.
* ``--progress=false``: a ``--flag/--no-flag`` switch given a boolean value, the form
  kubo and Go's flag package accept, becomes ``--flag`` or ``--no-flag``.
"""

from __future__ import annotations

import os
from typing import ClassVar

import click

from ..errors import UsageError

__all__ = ["SWITCH_VALUES", "bool_switches", "separate_values"]

#: boolean words accepted after ``--flag=`` (Go's strconv.ParseBool and click's BOOL)
SWITCH_VALUES = {"true": True, "1": True, "yes": True, "t": True,
                 "false": False, "0": False, "no": False, "f": False}


def separate_values(args: list[str], values: dict[str, frozenset[str]]) -> list[str]:
    """Join ``--flag VALUE`` into ``--flag=VALUE`` for the optional-value flags in
    ``values`` (flag -> the words it takes), when VALUE is one of them and no path of
    that name exists. Raises :class:`UsageError` when one does: then the word could mean
    either."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out += args[i:]
            break
        nxt = args[i + 1] if i + 1 < len(args) else None
        words = values.get(arg)
        if words is not None and nxt is not None and nxt.lower() in words:
            if os.path.lexists(nxt):
                raise UsageError(f"'{arg} {nxt}' is ambiguous: {nxt} is also a file here; "
                                 f"write {arg}={nxt} for the option, or {arg} ./{nxt} for "
                                 f"the file")
            out.append(f"{arg}={nxt}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def bool_switches(args: list[str], switches: frozenset[str]) -> list[str]:
    """``--progress=false`` -> ``--no-progress`` (and ``=true`` -> ``--progress``) for the
    ``--X/--no-X`` switches named in ``switches``."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            out += args[i:]
            break
        name, eq, value = arg.partition("=")
        if eq and name in switches:
            on = SWITCH_VALUES.get(value.lower())
            if on is None:
                raise UsageError(f"{name}={value}: the value must be true or false")
            out.append(name if on else "--no-" + name.removeprefix("--"))
        else:
            out.append(arg)
    return out


class SwitchCommand(click.Command):
    """A command whose ``--X/--no-X`` switches in :attr:`SWITCHES` also take ``--X=BOOL``."""

    SWITCHES: ClassVar[frozenset[str]] = frozenset({"--progress"})

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, bool_switches(args, self.SWITCHES))

