"""atomic_file: nothing is left beside the target, even when the interrupt lands right
after the temporary file is made."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from carget.atomic import atomic_file


def test_an_interrupt_right_after_the_temporary_is_made_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.open

    def open_then_sigint(*args: Any, **kwargs: Any) -> int:
        fd = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # as if Ctrl-C came in now
        return fd

    # another thread is alive, as in carget's own processes: the kernel may hand it the
    # signal, and Python then raises in the main thread at its next check, not when the
    # main thread unblocks anything (signal masks cannot close this window)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        monkeypatch.setattr(os, "open", open_then_sigint)
        with pytest.raises(KeyboardInterrupt):
            with atomic_file(str(tmp_path / "out.bin")) as (f, _):
                f.write(b"never")
    finally:
        stop.set()
        other.join()
    assert list(tmp_path.iterdir()) == []


def test_a_clean_block_renames_into_place(tmp_path: Path) -> None:
    with atomic_file(str(tmp_path / "out.bin")) as (f, tmp):
        f.write(b"done")
        assert os.path.dirname(tmp) == str(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    assert (tmp_path / "out.bin").read_bytes() == b"done"
