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
    "top_directory_options",
]

#: kubo 0.43's cap on size-N: bitswap's 2 MiB block limit less 256 bytes kept for the
#: protobuf/UnixFS framing of a dag-pb leaf (boxo chunker.ChunkSizeLimit)
MAX_CHUNK_SIZE = 2 * 1024 * 1024 - 256

#: kubo's file DAG width when --max-file-links is not given or not positive
#: (helpers.DefaultLinksPerBlock; kubo core/coreunix/add.go uses it for any value <= 0)
DEFAULT_FILE_LINKS = 174


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """Every setting that decides a UnixFS DAG's CIDs (kubo's names in the comments)."""

    cid_version: int = 0  # --cid-version
    raw_leaves: bool = False  # --raw-leaves
    chunk_size: int = 262144  # --chunker size-N
    layout: Literal["balanced", "trickle"] = "balanced"  # --trickle
    max_links: int = DEFAULT_FILE_LINKS  # --max-file-links (Import.UnixFSFileMaxLinks)
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
    hamt_fanout: int = 256  # --max-hamt-fanout (Import.UnixFSHAMTDirectoryMaxFanout)
    #: --max-directory-links (Import.UnixFSDirectoryMaxLinks): a basic directory of more
    #: entries becomes a HAMT; 0 (or less) means no limit
    max_directory_links: int = 0
    #: -E/--empty-dirs (Import.UnixFSIncludeEmptyDirs): False leaves out a directory whose
    #: listing is empty (after -H filtering), except the top one
    empty_dirs: bool = True
    #: --mode (UnixFS 1.5): one mode for every file and directory (kubo casts the number to
    #: a Go os.FileMode, so only the 0o777 permission bits survive); None: not given
    mode: int | None = None
    #: --mtime / --mtime-nsecs: one (seconds, nanoseconds) for every entry; None: not given
    mtime: tuple[int, int] | None = None
    # what the walk of the files takes in (kubo's go-ipfs-cmds and boxo files options)
    #: --ignore-rules-path's lines, then each --ignore (see carget.ignore)
    ignore: tuple[str, ...] = ()
    #: --dereference-symlinks: every symlink, argument or inside a directory, is added as
    #: what it points to
    dereference_symlinks: bool = False
    #: --dereference-args (kubo: deprecated): only symlinks given as arguments
    dereference_args: bool = False
    #: --stdin-name: the name of standard input's entry ("": named by its CID)
    stdin_name: str = ""

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
        raise UsageError(f"chunker parameters may not exceed the maximum chunk size of "
                         f"{MAX_CHUNK_SIZE}")
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
    max_file_links: int | None = None,
    max_directory_links: int | None = None,
    max_hamt_fanout: int | None = None,
    empty_dirs: bool = True,
    mode: int | None = None,
    mtime: int | None = None,
    mtime_nsecs: int | None = None,
    nocopy: bool = False,
    ignore: tuple[str, ...] = (),
    dereference_symlinks: bool = False,
    dereference_args: bool = False,
    stdin_name: str = "",
) -> ImportOptions:
    """Turn ``ipfs add`` flags into :class:`ImportOptions`, with kubo's rules.

    A profile gives the base, as kubo's config profile of that name does; flags given
    explicitly win. As kubo: a hash other than
    sha2-256 implies CIDv1 (and an explicit ``--cid-version=0`` with it is an error);
    CIDv1 implies raw leaves unless ``--raw-leaves=false`` was given.
    The DAG-shaping limits (kubo >= 0.35, core/commands/add.go): ``--max-file-links`` of 0
    or less means kubo's 174 (even under a profile); ``--max-directory-links`` of 0 or less
    means no limit; ``--max-hamt-fanout`` must be a power of 2 between 8 and 1024.
    ``--nocopy`` (kubo: leaves stay in the files, in its filestore) implies raw leaves;
    raw leaves turned off, by ``--raw-leaves=false``, a profile that writes them off or
    the mode/mtime rule, is then an error (kubo's coreiface options).
    Raises :class:`UsageError` for anything kubo would refuse, and for
    ``--max-file-links=1``, on which kubo 0.43.1 never finishes (a balanced DAG of one
    link per node never gets narrower).
    """
    if profile is not None and profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    base = PROFILES[profile] if profile else DEFAULT
    # kubo lower-cases the name and takes go-multihash's aliases: keep the canonical name
    hash_name = hash_function(hash or base.hash).name
    if hash_name == "identity":
        raise UsageError("--hash=identity is not allowed; use --inline")
    version = base.cid_version if cid_version is None else cid_version
    if version not in (0, 1):
        raise UsageError(f"unknown CID version {version}")
    # a kubo config profile writes Import.CidVersion and Import.UnixFSRawLeaves, and kubo
    # takes a written key as if its flag were given: under unixfs-v0-2015 --hash=sha3-256
    # is refused and --cid-version=1 keeps dag-pb leaves (checked against kubo 0.43.1)
    if hash_name != "sha2-256" and version == 0:
        if cid_version is not None or profile is not None:
            raise UsageError("CIDv0 only supports sha2-256")
        version = 1
    if raw_leaves is None:
        raw = base.raw_leaves if profile is not None else version > 0
    else:
        raw = raw_leaves
    # kubo: --mode/--mtime of 0 mean "not given"; a given one wins over --preserve-*
    custom_mode = (mode & 0o777) or None if mode else None
    if mtime_nsecs and not mtime:
        raise UsageError('option "mtime-nsecs" requires "mtime" to be provided as well')
    if mtime_nsecs is not None and mtime_nsecs > 999_999_999:
        raise UsageError("mtime nanoseconds must be in range [1, 999999999]")
    custom_mtime = (mtime, mtime_nsecs or 0) if mtime else None
    if mode:
        preserve_mode = False
    if mtime:
        preserve_mtime = False
    if preserve_mode or preserve_mtime or mode or mtime:
        # kubo core/commands/add.go: mode/mtime need a dag-pb root, so raw leaves go off,
        # and asking for them explicitly (flag, or a profile's config) is an error
        if raw_leaves or (raw_leaves is None and profile is not None and base.raw_leaves):
            raise UsageError("--raw-leaves can't be used with UnixFS metadata like mode or "
                             "modification time")
        raw = False
        raw_leaves = False  # kubo: as if --raw-leaves=false had been given
    if nocopy:
        if not raw and (raw_leaves is not None or profile is not None):
            raise UsageError("nocopy option requires '--raw-leaves' to be enabled as well")
        raw = True
    limit = base.inline_limit if inline_limit is None else inline_limit
    if limit < 0:
        raise UsageError("--inline-limit must not be negative")
    if inline and limit > 128:
        raise UsageError("--inline-limit is capped at 128 bytes (as kubo)")
    file_links = base.max_links if max_file_links is None else max_file_links
    if file_links <= 0:
        file_links = DEFAULT_FILE_LINKS
    if file_links == 1:
        raise UsageError("--max-file-links must be at least 2 (kubo never finishes with 1)")
    fanout = base.hamt_fanout if max_hamt_fanout is None else max_hamt_fanout
    if fanout < 8 or fanout > 1024 or fanout & (fanout - 1):
        raise UsageError(f"HAMT fanout must be a power of 2, between 8 and 1024 (got {fanout})")
    dir_links = base.max_directory_links if max_directory_links is None else max_directory_links
    return dataclasses.replace(
        base,
        max_links=file_links,
        hamt_fanout=fanout,
        max_directory_links=max(dir_links, 0),
        empty_dirs=empty_dirs,
        mode=custom_mode,
        mtime=custom_mtime,
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
        ignore=tuple(ignore),
        dereference_symlinks=dereference_symlinks,
        dereference_args=dereference_args,
        stdin_name=stdin_name,
    )


def top_directory_options(opts: ImportOptions) -> ImportOptions:
    """The options kubo 0.43.1 builds the top directory of an ``ipfs add`` with: its MFS
    root, which is the argument's own directory, or the ``-w`` wrapper (then the argument
    directories are inside it). ``--max-directory-links`` and ``--max-hamt-fanout`` reach
    every directory but that one (checked live in tests/interop/test_go_kubo_add.py), so
    the top one has no link limit and shards, by size, with the default fanout."""
    if opts.max_directory_links == 0 and opts.hamt_fanout == DEFAULT.hamt_fanout:
        return opts
    return dataclasses.replace(opts, max_directory_links=0, hamt_fanout=DEFAULT.hamt_fanout)
