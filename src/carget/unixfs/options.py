"""Import settings as frozen values, the named profiles, and kubo's flag rules.

Profiles (IPIP-499; boxo ``ipld/unixfs/io/profile.go``) are plain values passed
explicitly; nothing here mutates module state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from ..cid import hash_function
from ..errors import UsageError

__all__ = [
    "DEFAULT",
    "LEGACY_CID_V0",
    "PROFILES",
    "UNIXFS_V1_2025",
    "ImportOptions",
    "parse_chunker",
    "resolve_options",
]

#: bitswap's 2 MiB block limit (kubo refuses larger chunks: BlockSizeLimit = 1 MiB,
#: but accepts size-N up to 2 MiB via the chunker's own cap); we allow what kubo allows
MAX_CHUNK_SIZE = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """Every setting that decides a UnixFS DAG's CIDs (kubo's names in the comments)."""

    cid_version: int = 0  # --cid-version
    raw_leaves: bool = False  # --raw-leaves
    chunk_size: int = 262144  # --chunker size-N
    layout: Literal["balanced", "trickle"] = "balanced"  # --trickle
    max_links: int = 174  # file DAG width (helpers.DefaultLinksPerBlock)
    hash: str = "sha2-256"  # --hash
    inline: bool = False  # --inline
    inline_limit: int = 32  # --inline-limit
    # directories (issue 5)
    wrap: bool = False  # -w
    hidden: bool = False  # -H
    preserve_mode: bool = False  # --preserve-mode
    preserve_mtime: bool = False  # --preserve-mtime
    hamt_threshold: int = 262144  # HAMTShardingSize
    hamt_estimation: Literal["links", "block"] = "links"  # HAMTSizeEstimation
    hamt_fanout: int = 256  # HAMTShardWidth

    def replace(self, **changes: object) -> ImportOptions:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


DEFAULT = ImportOptions()
LEGACY_CID_V0 = DEFAULT
UNIXFS_V1_2025 = ImportOptions(
    cid_version=1,
    raw_leaves=True,
    chunk_size=1024 * 1024,
    max_links=1024,
    hamt_estimation="block",
)
PROFILES: dict[str, ImportOptions] = {
    "legacy-cid-v0": LEGACY_CID_V0,
    "unixfs-v0-2015": LEGACY_CID_V0,
    "unixfs-v1-2025": UNIXFS_V1_2025,
}


def parse_chunker(spec: str) -> int:
    """Parse kubo's ``size-N`` chunker spec. Raises :class:`UsageError` otherwise."""
    if spec == "default":
        return 262144
    name, _, arg = spec.partition("-")
    if name != "size":
        raise UsageError(f"unsupported chunker {spec!r} (carget implements size-N)")
    if not arg.isdigit():
        raise UsageError(f"bad chunker size in {spec!r}")
    size = int(arg)
    if size <= 0:
        raise UsageError(f"chunker size must be positive in {spec!r}")
    if size > MAX_CHUNK_SIZE:
        raise UsageError(f"chunker size {size} exceeds the {MAX_CHUNK_SIZE}-byte block limit")
    return size


def resolve_options(
    *,
    profile: str | None = None,
    cid_version: int | None = None,
    raw_leaves: bool | None = None,
    chunker: str | None = None,
    trickle: bool = False,
    hash: str | None = None,
    inline: bool = False,
    inline_limit: int | None = None,
    wrap: bool = False,
    hidden: bool = False,
    preserve_mode: bool = False,
    preserve_mtime: bool = False,
) -> ImportOptions:
    """Turn ``ipfs add`` flags into :class:`ImportOptions`, with kubo's rules.

    A profile gives the base; flags given explicitly win. As kubo: a hash other than
    sha2-256 implies CIDv1 (and an explicit ``--cid-version=0`` with it is an error);
    CIDv1 implies raw leaves unless ``--raw-leaves=false`` was given.
    Raises :class:`UsageError` for anything kubo would refuse.
    """
    if profile is not None and profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    base = PROFILES[profile] if profile else DEFAULT
    hash_name = (hash or base.hash).lower()
    hash_function(hash_name)
    if hash_name == "identity":
        raise UsageError("--hash=identity is not allowed; use --inline")
    version = base.cid_version if cid_version is None else cid_version
    if version not in (0, 1):
        raise UsageError(f"unknown CID version {version}")
    if hash_name != "sha2-256" and version == 0:
        if cid_version is not None:
            raise UsageError("CIDv0 only supports sha2-256")
        version = 1
    if raw_leaves is None:
        raw = base.raw_leaves or version > 0
    else:
        raw = raw_leaves
    if preserve_mode or preserve_mtime:
        # kubo core/commands/add.go: mode/mtime need a dag-pb root, so raw leaves go off,
        # and asking for them explicitly (flag, or a profile's config) is an error
        if raw_leaves or (raw_leaves is None and profile is not None and base.raw_leaves):
            raise UsageError("--raw-leaves can't be used with UnixFS metadata like mode or "
                             "modification time")
        raw = False
    limit = base.inline_limit if inline_limit is None else inline_limit
    if limit < 0:
        raise UsageError("--inline-limit must not be negative")
    if inline and limit > 128:
        raise UsageError("--inline-limit is capped at 128 bytes (as kubo)")
    return dataclasses.replace(
        base,
        cid_version=version,
        raw_leaves=raw,
        chunk_size=parse_chunker(chunker) if chunker else base.chunk_size,
        layout="trickle" if trickle else "balanced",
        hash=hash_name,
        inline=inline,
        inline_limit=limit,
        wrap=wrap,
        hidden=hidden,
        preserve_mode=preserve_mode,
        preserve_mtime=preserve_mtime,
    )
