"""Files that appear only complete: write beside the target, rename at the end.

Every output path carget writes (extracted files, CARs, fetched files from a fallback
mirror, edited templates) goes through :func:`atomic_file`, so a crash, an error or
Ctrl-C never leaves a partial file at the final path.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from .errors import InputError

__all__ = ["atomic_file", "new_file_mode"]



def _create_beside(target: str, path: str, made: list[str]) -> int:
    """Create a new temporary file beside ``target`` and return its descriptor. Its name
    goes into ``made`` *before* the file exists, so a caller that removes what ``made``
    names on any exception leaves nothing behind, wherever an interrupt lands (Ctrl-C is
    raised between bytecodes, whichever thread the signal reached). Raises
    :class:`InputError`."""
    prefix = os.path.join(os.path.dirname(target), f".{os.path.basename(target)[:64]}.")
    while True:
        made[:] = [f"{prefix}{secrets.token_hex(8)}.carget-tmp"]
        try:
            return os.open(made[0], os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            made.clear()  # someone else's: never ours to remove
        except OSError as exc:
            made.clear()
            raise InputError(f"{path}: cannot write there: {exc.strerror or exc}") from None


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
    made: list[str] = []
    try:
        fd = _create_beside(target, path, made)
        tmp = made[0]
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f, tmp
        os.chmod(tmp, new_file_mode() if file_mode is None else file_mode)
        if before_rename is not None:
            before_rename(tmp)
        os.replace(tmp, target)
    except BaseException:
        for name in made:
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
        raise
