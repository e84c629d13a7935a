"""atomic_file: nothing is left beside the target, even when the interrupt lands right
after the temporary file is made."""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

import pytest

from carget.atomic import atomic_file


def test_an_interrupt_right_after_the_temporary_is_made_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tempfile.mkstemp

    def mkstemp_then_sigint(*args: object, **kwargs: object) -> tuple[int, str]:
        made = real(*args, **kwargs)  # type: ignore[call-overload]
        os.kill(os.getpid(), signal.SIGINT)  # as if Ctrl-C came in now
        return made  # type: ignore[no-any-return]

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_then_sigint)
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(str(tmp_path / "out.bin")) as (f, _):
            f.write(b"never")
    assert list(tmp_path.iterdir()) == []


def test_a_clean_block_renames_into_place(tmp_path: Path) -> None:
    with atomic_file(str(tmp_path / "out.bin")) as (f, tmp):
        f.write(b"done")
        assert os.path.dirname(tmp) == str(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    assert (tmp_path / "out.bin").read_bytes() == b"done"
