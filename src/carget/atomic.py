"""Files that appear only complete: write beside the target, rename at the end.

Every output path carget writes (extracted files, CARs, fetched files from a fallback
mirror, edited templates) goes through :func:`atomic_file`, so a crash, an error or
Ctrl-C never leaves a partial file at the final path.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from .errors import InputError

__all__ = ["atomic_file", "new_file_mode"]

_STOPPING = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def new_file_mode() -> int:
    """The mode an ordinary new file gets under this process's umask (mkstemp makes 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_file(
    path: str,
    mode: str = "wb",
    *,
    file_mode: int | None = None,
    before_rename: Callable[[str], None] | None = None,
    **open_kwargs: Any,
) -> Iterator[tuple[IO[Any], str]]:
    """Yield ``(file, temporary path)`` for a temporary file in ``path``'s directory.

    When the block ends cleanly the file is closed, given ``file_mode`` (default: what a
    new file gets under the umask), passed to ``before_rename`` (to set metadata), and
    renamed over ``path``. On any exception, KeyboardInterrupt included, it is removed.
    Raises :class:`InputError` when the directory cannot take a new file.
    """
    target = os.path.abspath(path)
    # an interrupt between mkstemp and the try below would leak the temporary: hold the
    # signals that stop carget (SIGINT, SIGTERM, SIGHUP) until inside it
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)[:64]}.",
                                   suffix=".carget-tmp", dir=os.path.dirname(target))
    except OSError as exc:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        raise InputError(f"{path}: cannot write there: {exc.strerror or exc}") from None
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f, tmp
        os.chmod(tmp, new_file_mode() if file_mode is None else file_mode)
        if before_rename is not None:
            before_rename(tmp)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
