"""``carget add``: print CIDs like ``ipfs add --only-hash``, with kubo's flag names."""

from __future__ import annotations

import os
import sys
from typing import Any, ClassVar

import click

from ..errors import InputError, UsageError

#: kubo escapes non-printable characters in names it prints (cmdenv.EscNonPrint)
_PRINTABLE = {c: f"\\x{c:02x}" for c in range(32)} | {0x7F: "\\x7f"}


def _esc(name: str) -> str:
    return name.translate(_PRINTABLE)


class _KuboFlags(click.Command):
    """kubo's bool and optional-value flags: bare ``--raw-leaves`` means true and never
    swallows the next argument; ``--raw-leaves=false`` turns it off; likewise ``--digest``."""

    BARE: ClassVar[dict[str, str]] = {
        "--raw-leaves": "--raw-leaves=true",
        "--digest": "--digest=sha256",
    }

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        fixed: list[str] = []
        for i, arg in enumerate(args):
            if arg == "--":
                fixed += args[i:]
                break
            fixed.append(self.BARE.get(arg, arg))
        return super().parse_args(ctx, fixed)


@click.command(cls=_KuboFlags)
@click.argument("paths", nargs=-1)
@click.option("-r", "--recursive", is_flag=True, help="Add directory paths recursively.")
@click.option(
    "-w", "--wrap-with-directory", "wrap", is_flag=True, help="Wrap files with a directory object."
)
@click.option("-H", "--hidden", is_flag=True, help="Include files that are hidden.")
@click.option("-q", "--quiet", is_flag=True, help="Write minimal output: CIDs only.")
@click.option("-Q", "--quieter", is_flag=True, help="Write only the final CID.")
@click.option(
    "--cid-version",
    type=click.IntRange(0, 1),
    default=None,
    help="CID version (default 0; 1 implies --raw-leaves).",
)
@click.option(
    "--raw-leaves",
    type=click.BOOL,
    default=None,
    help="Use raw blocks for leaf nodes (--raw-leaves[=true|false]).",
)
@click.option(
    "--chunker",
    "-s",
    default=None,
    metavar="size-N",
    help="Chunking algorithm, size-N (default size-262144).",
)
@click.option("--trickle", "-t", is_flag=True, help="Use the trickle DAG layout.")
@click.option(
    "--hash",
    "hash_name",
    default=None,
    metavar="NAME",
    help="Hash function: sha2-256 (default), sha2-512, sha3-256, blake2b-256.",
)
@click.option("--inline", is_flag=True, help="Inline small blocks into identity CIDs.")
@click.option(
    "--inline-limit",
    type=click.IntRange(0),
    default=None,
    help="Maximum block size to inline (default 32).",
)
@click.option(
    "--profile",
    default=None,
    type=click.Choice(["legacy-cid-v0", "unixfs-v0-2015", "unixfs-v1-2025"]),
    help="Named import profile (IPIP-499).",
)
@click.option("--preserve-mode", is_flag=True, help="Store the files' modes (UnixFS 1.5).")
@click.option("--preserve-mtime", is_flag=True, help="Store the files' mtimes (UnixFS 1.5).")
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
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1),
    default=None,
    help="Hashing threads (default: number of CPUs).",
)
def add(
    paths: tuple[str, ...],
    recursive: bool,
    wrap: bool,
    hidden: bool,
    quiet: bool,
    quieter: bool,
    cid_version: int | None,
    raw_leaves: bool | None,
    chunker: str | None,
    trickle: bool,
    hash_name: str | None,
    inline: bool,
    inline_limit: int | None,
    profile: str | None,
    preserve_mode: bool,
    preserve_mtime: bool,
    digest: str | None,
    car_out: str | None,
    jobs: int | None,
) -> None:
    """Compute the UnixFS CIDs of PATHS (or stdin) as `ipfs add --only-hash` would."""
    from ..unixfs.options import resolve_options

    opts = resolve_options(
        profile=profile,
        cid_version=cid_version,
        raw_leaves=raw_leaves,
        chunker=chunker,
        trickle=trickle,
        hash=hash_name,
        inline=inline,
        inline_limit=inline_limit,
        wrap=wrap,
        hidden=hidden,
        preserve_mode=preserve_mode,
        preserve_mtime=preserve_mtime,
    )
    sources = list(paths) or ["-"]
    if sources.count("-") > 1:
        raise UsageError("stdin (-) can be given only once")
    for p in sources:  # check everything before printing anything
        if p == "-":
            continue
        clean = os.path.normpath(p)  # as kubo: cleaned, then lstat-ed (symlinks stay links)
        if not os.path.lexists(clean):
            raise InputError(f"{p}: no such file or directory")
        if os.path.isdir(clean) and not os.path.islink(clean) and not recursive:
            raise InputError(f"{p} is a directory (use -r to add directories)")
    if car_out == "-" and not (quiet or quieter):
        raise UsageError("--car - writes the CAR to stdout: combine it with -q or -Q")

    lines: list[tuple[str, str, str | None]] = []  # (cid, name, digest)
    out = sys.stdout

    def report(cid: str, name: str, file_digest: str | None = None) -> None:
        if quieter:
            lines[:] = [(cid, name, file_digest)]  # only the last is printed: keep one
            return
        if quiet:
            out.write(f"{cid}\n")
        else:
            out.write(f"added {cid} {_esc(name)}\n")
        if file_digest:
            out.write(f"{file_digest}\n" if quiet else f"digest {file_digest} {_esc(name)}\n")

    from ..tree import add_paths

    kwargs: dict[str, Any] = {"jobs": jobs, "digest": digest, "report": report}
    if car_out is not None:
        from ..car.writer import open_car_writer

        with open_car_writer(car_out) as writer:
            roots = add_paths(sources, opts, emit=writer.write_block, **kwargs)
            writer.set_roots(roots)
    else:
        add_paths(sources, opts, **kwargs)
    if quieter and lines:
        cid, _, file_digest = lines[-1]
        out.write(f"{cid}\n")
        if file_digest:
            out.write(f"{file_digest}\n")
    out.flush()
