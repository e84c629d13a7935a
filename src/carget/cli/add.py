"""``carget add``: print CIDs like ``ipfs add --only-hash``, with kubo's flag names."""

from __future__ import annotations

import os
import sys
from typing import Any, ClassVar

import click

from ..errors import InputError, UsageError
from ._importflags import KuboFlagsCommand, add_flags, import_flags, pop_import_options

#: kubo escapes non-printable characters in names it prints (cmdenv.EscNonPrint)
_PRINTABLE = {c: f"\\x{c:02x}" for c in range(32)} | {0x7F: "\\x7f"}


def printable_name(name: str) -> str:
    return name.translate(_PRINTABLE)


class ValueWordsCommand(KuboFlagsCommand):
    """kubo's flag forms, plus ``--digest sha512`` and ``--raw-leaves true`` written as two
    words: taken as the value when no file has that name, else a message naming both
    forms (:func:`carget.cli._flagforms.separate_values`)."""

    VALUES: ClassVar[dict[str, frozenset[str]]] = {
        "--digest": frozenset({"sha256", "sha512"}),
        "--raw-leaves": frozenset({"true", "false"}),
    }

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from ._flagforms import separate_values

        names = {opt for p in self.params for opt in getattr(p, "opts", ())}
        values = {k: v for k, v in self.VALUES.items() if k in names}
        return super().parse_args(ctx, separate_values(args, values))


def _json_line(cid: str, name: str, file_digest: str | None) -> str:
    """kubo's ``ipfs add --enc=json`` object for one entry (kubo adds "Size", the DAG's
    cumulative size as text, which carget's report does not carry)."""
    import json

    doc = {"Name": name, "Hash": cid}
    if file_digest:
        doc["Digest"] = file_digest
    return json.dumps(doc) + "\n"


@click.command(cls=ValueWordsCommand)
@click.argument("paths", nargs=-1)
@click.option("-r", "--recursive", is_flag=True, help="Add directory paths recursively.")
@click.option("-q", "--quiet", is_flag=True, help="Write minimal output: CIDs only.")
@click.option("-Q", "--quieter", is_flag=True, help="Write only the final CID.")
@import_flags
@add_flags
@click.option(
    "--digest",
    type=click.Choice(["sha256", "sha512"]),
    default=None,
    help="Also print each file's digest as sha256:HEX (--digest[=sha512]).",
)
@click.option(
    "--car",
    "car_out",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=None,
    help="Also write the DAG as a CARv1 file (- for stdout).",
)
@click.option("--silent", is_flag=True,
              help="Print no line for files, symlinks and stdin; directories are still "
                   "printed, as kubo's --silent does.")
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object a line, as kubo\'s --enc=json: {"Name": ..., "Hash": ...} '
                   '(and "Digest" with --digest).')
def add(
    paths: tuple[str, ...],
    recursive: bool,
    quiet: bool,
    quieter: bool,
    digest: str | None,
    car_out: str | None,
    silent: bool,
    as_json: bool,
    **flags: Any,
) -> None:
    """Compute the UnixFS CIDs of PATHS (or stdin) as `ipfs add --only-hash` would."""
    opts, jobs = pop_import_options(flags)
    if as_json and (quiet or quieter):
        raise UsageError("--json prints every entry: leave out -q and -Q")
    sources = list(paths) or ["-"]
    if sources.count("-") > 1:
        raise UsageError("stdin (-) can be given only once")
    for p in sources:  # check everything before printing anything
        if p == "-":
            continue
        clean = os.path.normpath(p)  # as kubo: cleaned, then lstat-ed (symlinks stay links)
        if not os.path.lexists(clean):
            raise InputError(f"{p}: no such file or directory")
        followed = opts.dereference_symlinks or opts.dereference_args
        if os.path.isdir(clean) and (followed or not os.path.islink(clean)) and not recursive:
            raise InputError(f"{p} is a directory (use -r to add directories)")
    if car_out == "-" and not (quiet or quieter):
        raise UsageError("--car - writes the CAR to stdout: combine it with -q or -Q")

    lines: list[tuple[str, str, str | None]] = []  # (cid, name, digest)
    out = sys.stdout

    def report(cid: str, name: str, file_digest: str | None = None) -> None:
        if quieter:
            lines[:] = [(cid, name, file_digest)]  # only the last is printed: keep one
            return
        if as_json:
            out.write(_json_line(cid, name, file_digest))
            return
        if quiet:
            out.write(f"{cid}\n")
        else:
            out.write(f"added {cid} {printable_name(name)}\n")
        if file_digest:
            shown = printable_name(name)
            out.write(f"{file_digest}\n" if quiet else f"digest {file_digest} {shown}\n")

    from ..tree import add_paths

    # -Q prints the last root alone: without --digest no line is needed before it, and
    # not reporting spares a CID-to-text conversion per file (~8 µs for a CIDv0)
    wanted = report if not quieter or digest or silent else None
    kwargs: dict[str, Any] = {"jobs": jobs, "digest": digest, "report": wanted,
                              "report_leaves": not silent}
    if car_out is not None:
        from ..car.writer import open_car_writer

        with open_car_writer(car_out) as writer:
            roots = add_paths(sources, opts, emit=writer.write_block, **kwargs)
            writer.set_roots(roots)
    else:
        roots = add_paths(sources, opts, **kwargs)
    if quieter and wanted is None and roots:
        out.write(f"{roots[-1]}\n")  # the last line add_paths reports is its last root
    elif quieter and lines:
        cid, _, file_digest = lines[-1]
        out.write(f"{cid}\n")
        if file_digest:
            out.write(f"{file_digest}\n")
    out.flush()
