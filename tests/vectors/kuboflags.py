"""kubo ``ipfs add`` flags, as the vectors spell them, turned into carget's ImportOptions.

One place for the mapping, shared by the file and directory vector tests and the
differential test. ``max-links`` is kubo's config ``Import.UnixFSFileMaxLinks`` (no flag
in kubo v0.22); ``recursive`` is implied by adding a directory.
"""

from __future__ import annotations

from typing import Any

from carget.unixfs.options import ImportOptions, resolve_options

#: kubo flag name -> resolve_options keyword
FLAGS = {
    "cid-version": "cid_version",
    "raw-leaves": "raw_leaves",
    "chunker": "chunker",
    "trickle": "trickle",
    "hash": "hash",
    "inline": "inline",
    "inline-limit": "inline_limit",
    "profile": "profile",
    "hidden": "hidden",
    "wrap-with-directory": "wrap",
}


def import_options(flags: dict[str, Any]) -> ImportOptions:
    kwargs = {FLAGS[k]: v for k, v in flags.items() if k in FLAGS}
    unknown = set(flags) - set(FLAGS) - {"max-links", "recursive"}
    if unknown:
        raise KeyError(f"unknown kubo flags in a vector: {sorted(unknown)}")
    opts = resolve_options(**kwargs)
    if "max-links" in flags:
        opts = opts.replace(max_links=flags["max-links"])
    return opts
