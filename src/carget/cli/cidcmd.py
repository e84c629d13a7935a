"""``carget cid format``: convert CIDs between versions and bases, as ``ipfs cid format``."""

from __future__ import annotations

import sys

import click

from ..cid import CID
from ..errors import CargetError, CIDParseError, UsageError
from ..multibase import BASES


def _parse(text: str) -> CID:
    """A CID, or :class:`CIDParseError` saying that ``text`` is not one (and why)."""
    try:
        return CID.parse(text)
    except (CargetError, ValueError, KeyError) as exc:
        why = str(exc).replace(f" in {text!r}", "").replace(f" {text!r}", "")
        raise CIDParseError(f"{text} is not a CID ({why})") from None


@click.group()
def cid() -> None:
    """CID utilities."""


@cid.command(name="format")
@click.option("-v", "version", type=click.Choice(["0", "1"]), default=None,
              help="CID version to convert to.")
@click.option("-b", "base", type=click.Choice(sorted(BASES)), default=None,
              help="Multibase to print in (default: base58btc for v0, base32 for v1).")
@click.argument("cids", nargs=-1, metavar="[CID...]")
def format_(version: str | None, base: str | None, cids: tuple[str, ...]) -> None:
    """Print each CID converted; with no CID arguments, read them from stdin (one or more
    a line, as kubo). As kubo, asking for a base other than base58btc without -v
    converts a CIDv0 to CIDv1 (CIDv0 exists only in base58btc)."""
    if not cids:
        if sys.stdin.isatty():
            raise UsageError("give CIDs as arguments, or on stdin (e.g. carget add -q FILE "
                             "| carget cid format -v 1)")
        cids = tuple(word for line in sys.stdin for word in line.split())
    for text in cids:
        c = _parse(text)
        if version == "0":
            if c.codec != 0x70 or c.multihash[:2] != b"\x12\x20":
                raise UsageError(f"{text}: only dag-pb sha2-256 CIDs have a CIDv0 form")
            c = c.to_v0()
            if base not in (None, "base58btc"):
                raise UsageError("CIDv0 can only be written in base58btc")
        elif version == "1" or (base not in (None, "base58btc") and c.version == 0):
            c = c.to_v1()
        click.echo(c.encode(base))
