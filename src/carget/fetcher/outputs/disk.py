"""Writing an output to disk: room reserved ahead, and write errors worded as carget's."""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

from ...errors import OutputError

__all__ = ["reserve", "writing"]


@contextmanager
def writing(where: str) -> Iterator[None]:
    """An OSError from writing the output becomes :class:`OutputError`; BrokenPipeError
    (a ``cat`` reader that went away) passes, and the command line words it itself."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write {where}: {exc.strerror or exc}") from None


def reserve(fd: int, size: int) -> None:
    """Allocate the first ``size`` bytes of the file's blocks now (Linux ``fallocate``,
    mode 0: bytes already there stay), so a disk without room for the download fails
    at its start rather than near its end, and the writes that follow skip ext4's
    per-page delayed allocation (512 MiB of 1 MiB pwrites: 0.088 s fresh, 0.051 s into
    reserved blocks). A filesystem that cannot reserve ahead just allocates as bytes
    are written. Raises :class:`OSError` when there is no room (ENOSPC, EFBIG, EDQUOT)."""
    call = _fallocate()
    if call is None or size <= 0:
        return
    import ctypes

    while call(fd, 0, 0, size) != 0:
        err = ctypes.get_errno()
        if err == errno.EINTR:
            continue
        if err in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise OSError(err, os.strerror(err))
        return  # EOPNOTSUPP and the like: allocated as written instead


@functools.cache
def _fallocate() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):  # pragma: no cover - a libc without fallocate
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int
    return cast("Callable[[int, int, int, int], int]", fn)
