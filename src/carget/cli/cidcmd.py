"""``carget cid format``: convert CIDs between versions and bases, as ``ipfs cid format``."""

from __future__ import annotations

import click

from ..cid import CID
from ..errors import UsageError
from ..multibase import BASES


@click.group()
def cid() -> None:
    """CID utilities."""


@cid.command(name="format")
@click.option("-v", "version", type=click.Choice(["0", "1"]), default=None,
              help="CID version to convert to.")
@click.option("-b", "base", type=click.Choice(sorted(BASES)), default=None,
              help="Multibase to print in (default: base58btc for v0, base32 for v1).")
@click.argument("cids", nargs=-1, required=True, metavar="CID...")
def format_(version: str | None, base: str | None, cids: tuple[str, ...]) -> None:
    """Print each CID converted. As kubo, asking for a base other than base58btc without
    -v converts a CIDv0 to CIDv1 (CIDv0 exists only in base58btc)."""
    for text in cids:
        c = CID.parse(text)
        if version == "0":
            if c.codec != 0x70 or c.multihash[:2] != b"\x12\x20":
                raise UsageError(f"{text}: only dag-pb sha2-256 CIDs have a CIDv0 form")
            c = c.to_v0()
            if base not in (None, "base58btc"):
                raise UsageError("CIDv0 can only be written in base58btc")
        elif version == "1" or (base not in (None, "base58btc") and c.version == 0):
            c = c.to_v1()
        click.echo(c.encode(base))
