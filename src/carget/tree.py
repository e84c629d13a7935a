"""Adding paths: files, stdin, and (issue 5) directory trees with -r / -w.

``add_paths`` is what ``carget add`` runs: it imports each source and calls ``report(cid,
name, digest)`` for every entry in kubo's output order (children before parents, root last).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from .add import Emit, add_file, import_stream
from .cid import CID
from .errors import InputError
from .unixfs.options import ImportOptions

__all__ = ["Report", "add_paths"]

Report = Callable[[str, str, "str | None"], None]


def add_paths(
    sources: Sequence[str],
    opts: ImportOptions,
    *,
    jobs: int | None = None,
    emit: Emit | None = None,
    digest: str | None = None,
    report: Report | None = None,
) -> list[CID]:
    """Import each source ("-" is stdin) and return the root CIDs, in order.

    Raises :class:`InputError` for paths that cannot be read.
    """
    roots: list[CID] = []
    for src in sources:
        if src == "-":
            result = import_stream(sys.stdin.buffer, opts, jobs=jobs, emit=emit, digest=digest)
            name = str(result.cid)  # kubo names stdin by its CID
        else:
            if os.path.isdir(src):
                raise InputError(f"{src}: directories are not supported yet")
            result = add_file(src, opts, jobs=jobs, emit=emit, digest=digest)
            name = os.path.basename(os.path.normpath(src))
        if report is not None:
            report(str(result.cid), name, result.digest)
        roots.append(result.cid)
    return roots
