"""`carget serve` stops cleanly on Ctrl-C, SIGTERM and SIGHUP, also when the signal comes
the moment it says where it listens (what a test harness or a service manager does)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_serve_stops_on_a_signal_sent_as_soon_as_it_listens(tmp_path: Path,
                                                            sig: signal.Signals) -> None:
    (tmp_path / "f.bin").write_bytes(b"x" * 1000)
    with subprocess.Popen([sys.executable, "-m", "carget", "serve", "--listen",
                           "127.0.0.1:0", str(tmp_path / "f.bin")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        assert p.stdout is not None and p.stderr is not None
        for line in p.stdout:
            if line.startswith("serving on "):
                break
        p.send_signal(sig)
        try:
            code = p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
        err = p.stderr.read()
    assert code == 0, err
    assert "Traceback" not in err and err.strip().endswith("stopped")
