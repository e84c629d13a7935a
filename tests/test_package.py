"""Package-level rules: the sans-IO cores import no network or terminal libraries, and the
public face is what the README documents."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import carget
from carget.cid import Block


def test_sans_io_cores_import_no_io_libraries() -> None:
    code = (
        "import sys, carget.unixfs.file, carget.unixfs.node, carget.unixfs.options, "
        "carget.add, carget.car\n"
        "import pkgutil, importlib\n"
        "for pkg in ('carget.unixfs', 'carget.car'):\n"
        "    mod = importlib.import_module(pkg)\n"
        "    for info in pkgutil.iter_modules(mod.__path__):\n"
        "        importlib.import_module(pkg + '.' + info.name)\n"
        "bad = sorted(m for m in ('trio', 'httpx', 'click', 'rich', 'h11') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_add_loads_only_what_it_uses() -> None:
    code = (
        "import sys\n"
        "from carget.cli import main\n"
        "sys.argv = ['carget', 'add', '-q', '-']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(','.join(m for m in ('trio', 'httpx', 'rich', 'multiformats') if m in sys.modules),"
        " file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], input="x", capture_output=True, text=True)
    assert out.stderr.strip() == ""


def test_public_names() -> None:
    assert sorted(carget.__all__) == sorted(
        [
            "CID",
            "AddResult",
            "Block",
            "CargetError",
            "ImportOptions",
            "add_bytes",
            "add_file",
            "resolve_options",
        ]
    )
    for name in carget.__all__:
        assert getattr(carget, name) is not None


def test_start_up_imports_nothing_the_command_does_not_use(tmp_path: Path) -> None:
    """``car verify`` needs no concurrent.futures (its logging import alone is ~2.5 ms of
    start-up) and no json; ``add -r`` no DAG reader. Issue 16: start-up is a tenth of
    adding 10,000 small files."""
    from carget.car.writer import open_car_writer
    from carget.cid import CID, RAW

    car = tmp_path / "one.car"
    with open_car_writer(str(car)) as writer:
        cid = CID.of(b"block", RAW)
        writer.write_block(Block(cid, b"block"))
        writer.set_roots([cid])
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "file").write_bytes(b"x" * 3000)
    unused = {
        ("car", "verify", "-j", "2", str(car)): ("concurrent.futures", "logging", "json"),
        ("add", "-r", "-Q", str(tree)): ("concurrent.futures", "carget.unixfs.node"),
    }
    for argv, modules in unused.items():
        code = (
            "import sys\n"
            "from carget.cli import main\n"
            f"sys.argv = ['carget', *{list(argv)!r}]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            f"print(','.join(m for m in {modules!r} if m in sys.modules), file=sys.stderr)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert out.stderr.strip() == "", argv


def test_version_and_a_plain_get_load_only_what_they_use(tmp_path: Path) -> None:
    """``carget --version`` reads no package metadata (importlib.metadata was ~40% of its
    run); a plain ``get`` (no proxy in the environment, no ``--json``, a run too short to
    journal) loads neither urllib.request (with http.client and the email package) nor
    json, nor the tree strategy, ``--car``'s output or the mirror fallback. Issue 17:
    start-up is ~0.1 s of every ``get``."""
    import os

    from carget.cid import CID
    from carget.server.testing import running_gateway

    src = tmp_path / "one.bin"
    src.write_bytes(b"one block")
    cid = str(CID.of(b"one block", 0x55))
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    with running_gateway([src], cid_version=1) as url:
        # (macOS and Windows read proxies from the system's settings through urllib)
        proxies = ("urllib.request", "http.client", "email") if sys.platform == "linux" else ()
        runs = {
            ("--version",): ("importlib.metadata",),
            ("get", "-q", "-g", url, cid, "-o", str(tmp_path / "got.bin")):
                (*proxies, "json", "carget.fetcher.tree", "carget.fetcher.outputs.tree",
                 "carget.fetcher.outputs.car", "carget.fetcher.fallback"),
        }
        for argv, modules in runs.items():
            code = (
                "import sys\n"
                "from carget.cli import main\n"
                f"sys.argv = ['carget', *{list(argv)!r}]\n"
                "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
                f"print(','.join(m for m in {modules!r} if m in sys.modules), file=sys.stderr)\n"
            )
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 env=env)
            assert out.returncode == 0, out.stderr
            assert out.stderr.strip() == "", argv
            if argv == ("--version",):
                assert out.stdout == f"carget, version {carget.__version__}\n"
    assert (tmp_path / "got.bin").read_bytes() == b"one block"
