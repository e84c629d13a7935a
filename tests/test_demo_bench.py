"""``carget demo`` and ``carget bench``: they run, verify, clean up, and report ratios."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from carget.bench import make_sample, run_bench, sha256_file
from carget.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_demo_runs_offline_verifies_and_cleans_up() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "carget", "demo", "--size", "3"],
        capture_output=True, text=True, timeout=120, env={"COLUMNS": "400", "PATH": ""},
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    sample = re.search(r"sample file \(deterministic bytes\): (\S+)", out)
    assert sample is not None
    assert not Path(sample.group(1)).exists()  # the temp dir is gone
    assert not Path(sample.group(1)).parent.exists()
    cid = re.search(r"\b(bafy[a-z2-7]+)\b", out)
    assert cid is not None
    assert f"fetched ipfs://{cid.group(1)}" in out
    assert "127.0.0.1" in out
    assert "the bytes are identical" in out
    assert re.search(r"hashlib SHA-256 of the same bytes: [\d,]+ MB/s", out)
    assert "cleaned up" in out


def test_sample_is_deterministic(tmp_path: Path) -> None:
    make_sample(tmp_path / "a", 5_000_000)
    make_sample(tmp_path / "b", 5_000_000)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    digest, seconds = sha256_file(tmp_path / "a")
    assert digest.startswith("sha256:") and seconds >= 0


def test_bench_json_has_every_stage_with_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["bench", "--size", "2", "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {"size_bytes", "cid", "sha256_mbps", "cpu_count", "python", "stages"}
    assert doc["size_bytes"] == 2 * 2**20
    assert doc["cid"].startswith("bafy")
    names = [s["name"] for s in doc["stages"]]
    assert names[0] == "sha256 (hashlib)"
    assert "add (1 job)" in names and "car verify" in names and "fetch (loopback)" in names
    if doc["cpu_count"] > 1:
        assert f"add ({doc['cpu_count']} jobs)" in names
        # the read-plus-hash limit of that many cores, measured in the same run
        assert f"sha256 limit ({doc['cpu_count']} threads, a share each)" in names
    for s in doc["stages"]:
        assert set(s) == {"name", "seconds", "mbps", "ratio"}
        assert s["mbps"] > 0 and s["ratio"] > 0
        assert s["ratio"] == pytest.approx(s["mbps"] / doc["sha256_mbps"], rel=0.02)
    assert doc["stages"][0]["ratio"] == pytest.approx(1.0, rel=0.02)


def test_bench_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["bench", "--size", "1"], capsys)
    assert code == 0, err
    for name in ("sha256 (hashlib)", "add (1 job)", "car verify", "fetch (loopback)"):
        assert name in out
    assert "x SHA-256" in out


def test_run_bench_selected_stages(tmp_path: Path) -> None:
    report = run_bench(300_000, workdir=tmp_path, stages=("car",))
    assert [s.name for s in report.stages] == ["sha256 (hashlib)", "car verify"]
    assert list(tmp_path.iterdir()) == []  # its temp dir is removed


def test_bench_plot_without_matplotlib_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out_png = tmp_path / "b.png"
    code, out, err = run_cli(["bench", "--size", "1", "--plot", str(out_png)], capsys)
    assert code == 2
    assert "matplotlib" in err and "carget[plot]" in err
    assert out == "" and not out_png.exists()


def test_bench_plot_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_png = tmp_path / "b.png"
    code, _, err = run_cli(["bench", "--size", "1", "--json", "--plot", str(out_png)], capsys)
    assert code == 0, err
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_size_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["bench", "--size", "0"], capsys)
    assert code == 2 and "--size" in err
    code, _, err = run_cli(["demo", "--size", "-1"], capsys)
    assert code == 2 and "--size" in err
