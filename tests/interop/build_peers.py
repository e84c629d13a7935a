#!/usr/bin/env python3
"""Build the peers the interop tests run (the Go peers, pinned, and curl 8), once per machine.

    python3 tests/interop/build_peers.py          # build what is missing, reuse the rest

Each peer goes into ``$CARGET_PEERS_DIR`` (default ``~/.cache/carget-peers``) in a folder
named by its version, and is reused from there when present:

- ``kubo-v0.43.1/ipfs``: kubo v0.43.1 from the Go module proxy. Its go.mod replaces
  go-libp2p with a fork (github.com/lidel/go-libp2p) that the proxy refuses, so the build
  drops that one replace and takes go-libp2p v0.50.0 instead, the release that requires the
  same quic-go v0.62.0 and webtransport-go v0.13.0 the fork was made for. Nothing else in
  kubo's module graph changes (boxo, the importer and the gateway are kubo's own).
- ``gocar-v2.17.0-<hash>/carget-gocar``: go-car's own ``car`` command lives in a module the
  proxy does not serve (github.com/ipld/go-car/cmd), so tests/interop/gocar is a small
  program over the go-car v2.17.0 library (verify, ls, roots, create a CARv2, wrap,
  extract-v1); the folder name carries a hash of that program's source.
- ``lassie-v0.23.2/lassie``: github.com/filecoin-project/lassie's ``cmd/lassie``, built in its
  module source (``go install ...@v0.23.2`` fails: it asks for the version list, refused).
- ``gateway-conformance-v0.13.2/``: the binary and ``fixtures/`` from ``extract-fixtures``.
- ``curl-8-bookworm-backports/curl``: curl 8 with its ``ipfs://`` scheme (curl 8.4 and later
  rewrite ``ipfs://CID/path`` to ``$IPFS_GATEWAY/ipfs/CID/path``), for the README's bridge
  recipe; Debian 12's own curl is 7.88. The ``curl`` and ``libcurl4`` packages of
  bookworm-backports are downloaded with a private apt configuration (the system's sources
  and package state are left alone) and unpacked into the folder; ``curl`` there is a
  small script that runs the unpacked binary with its own libcurl.

A peer the proxy refuses outright (HTTP 403/404, "not available": a final answer) is
recorded as ``UNAVAILABLE`` in its folder with the proxy's words and not asked for again on
that machine, and its tests skip with that reason; at the time of writing that is
gateway-conformance v0.13.2. Any other failure
(a compile error, no Go, a proxy that does not answer) exits non-zero, so CI fails, unless
``CARGET_SKIP_PEERS=1`` is set (then nothing is built and the peers' tests skip).

Builds run under ``nice -n 19`` with GOMAXPROCS unset (the machine is shared), one build at a
time per peers folder (a lock), each binary moved into place only when complete.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

KUBO_VERSION = "v0.43.1"
KUBO_LIBP2P = "v0.50.0"  # replaces kubo's go-libp2p fork (see above)
GOCAR_VERSION = "v2.17.0"
LASSIE_VERSION = "v0.23.2"
CONFORMANCE_VERSION = "v0.13.2"
CURL8_SUITE = "bookworm-backports"  # Debian's suite with curl 8 for Debian 12

GOCAR_SRC = HERE / "gocar"

#: what the proxy says when it will not serve a module version (final, not a time-out)
_REFUSALS = ("403 Forbidden", "404 Not Found", "410 Gone", "not available",
             "no matching versions")


def peers_dir() -> Path:
    env = os.environ.get("CARGET_PEERS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "carget-peers"


def gocar_tag() -> str:
    h = hashlib.sha256()
    for name in ("main.go", "go.mod", "go.sum"):
        h.update(name.encode() + b"\0" + (GOCAR_SRC / name).read_bytes() + b"\0")
    return f"gocar-{GOCAR_VERSION}-{h.hexdigest()[:12]}"


@dataclass(frozen=True)
class Paths:
    """Where each peer lives once built (the tests' view: tests/interop/peers.py)."""

    root: Path

    @property
    def kubo(self) -> Path:
        return self.root / f"kubo-{KUBO_VERSION}" / "ipfs"

    @property
    def gocar(self) -> Path:
        return self.root / gocar_tag() / "carget-gocar"

    @property
    def lassie(self) -> Path:
        return self.root / f"lassie-{LASSIE_VERSION}" / "lassie"

    @property
    def curl8(self) -> Path:
        return self.root / f"curl-8-{CURL8_SUITE}" / "curl"

    @property
    def conformance_dir(self) -> Path:
        return self.root / f"gateway-conformance-{CONFORMANCE_VERSION}"

    @property
    def conformance(self) -> Path:
        return self.conformance_dir / "gateway-conformance"

    @property
    def conformance_fixtures(self) -> Path:
        return self.conformance_dir / "fixtures"

    def unavailable(self, binary: Path) -> str | None:
        """The proxy's refusal recorded for this peer, if any."""
        marker = binary.parent / "UNAVAILABLE"
        return marker.read_text().strip() if marker.is_file() else None


class Unavailable(Exception):
    """The Go module proxy refused a module version: a final answer, not a failure."""

    def __init__(self, text: str) -> None:
        # the proxy's words without its address
        text = re.sub(r"reading https?://\S+: ", "", " ".join(text.split()))
        super().__init__(text.replace("server response: ", ""))


def _go() -> str:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not os.access(go, os.X_OK):
        raise SystemExit("build_peers: no Go toolchain (go on PATH or /usr/local/go/bin/go)")
    return go


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GOMAXPROCS"}
    env.setdefault("GOTOOLCHAIN", "local")
    env.update(extra)
    return env


def _run(args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
         nice: bool = True) -> str:
    cmd = (["nice", "-n", "19"] if nice else []) + args
    p = subprocess.run(cmd, cwd=cwd, env=env or _env(), capture_output=True, text=True)
    if p.returncode != 0:
        out = (p.stdout + p.stderr).strip()
        if any(r in out for r in _REFUSALS) and "/@v/" in out:
            raise Unavailable(out.splitlines()[-1] if out else "refused")
        raise RuntimeError(f"{' '.join(args)} (in {cwd or os.getcwd()}) failed:\n{out[-4000:]}")
    return p.stdout


def _download(module: str, version: str) -> Path:
    """The module's source folder in the module cache (read-only)."""
    p = subprocess.run([_go(), "mod", "download", "-json", f"{module}@{version}"],
                       env=_env(), capture_output=True, text=True, cwd=tempfile.gettempdir())
    info = json.loads(p.stdout) if p.stdout.strip() else {}
    if info.get("Error") or p.returncode != 0:
        err = info.get("Error") or p.stderr.strip()
        if any(r in err for r in _REFUSALS):
            raise Unavailable(err)
        raise RuntimeError(f"go mod download {module}@{version}: {err}")
    return Path(info["Dir"])


def _install(dest: Path, build) -> None:  # type: ignore[no-untyped-def]
    """Run ``build(tmp_binary)`` in a scratch folder, then move the binary into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".build-") as tmp:
        out = Path(tmp) / dest.name
        build(Path(tmp), out)
        os.replace(out, dest)
    (dest.parent / "UNAVAILABLE").unlink(missing_ok=True)


def _module_source(module: str, version: str, into: Path) -> Path:
    """A writable copy of the module's source (the module cache is read-only)."""
    shutil.copytree(_download(module, version), into)
    for d, _, files in os.walk(into):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)
    return into


def build_kubo(dest: Path) -> None:
    def build(tmp: Path, out: Path) -> None:
        src = _module_source("github.com/ipfs/kubo", KUBO_VERSION, tmp / "src")
        go = _go()
        if "replace github.com/libp2p/go-libp2p =>" in (src / "go.mod").read_text():
            _run([go, "mod", "edit", "-dropreplace", "github.com/libp2p/go-libp2p"], cwd=src,
                 nice=False)
            _run([go, "get", f"github.com/libp2p/go-libp2p@{KUBO_LIBP2P}"], cwd=src)
        _run([go, "build", "-trimpath", "-o", str(out), "./cmd/ipfs"], cwd=src)

    _install(dest, build)


def build_gocar(dest: Path) -> None:
    def build(tmp: Path, out: Path) -> None:
        _run([_go(), "build", "-trimpath", "-o", str(out), "."], cwd=GOCAR_SRC)

    _install(dest, build)


def build_lassie(dest: Path) -> None:
    # built in its own source folder: `go install lassie@version` also asks the proxy for the
    # module's version list (for deprecation notices), which the proxy refuses
    def build(tmp: Path, out: Path) -> None:
        src = _module_source("github.com/filecoin-project/lassie", LASSIE_VERSION, tmp / "src")
        _run([_go(), "build", "-trimpath", "-o", str(out), "./cmd/lassie"], cwd=src)

    _install(dest, build)


def build_conformance(paths: Paths) -> None:
    """The suite's binary and its fixtures. Its ``test`` command runs ``go test`` over the
    suite's source, found through GATEWAY_CONFORMANCE_HOME (the module's folder)."""
    module = "github.com/ipfs/gateway-conformance"
    home = _download(module, CONFORMANCE_VERSION)
    dest = paths.conformance
    if not dest.is_file():
        def build(tmp: Path, out: Path) -> None:
            src = _module_source(module, CONFORMANCE_VERSION, tmp / "src")
            _run([_go(), "build", "-o", str(out), "./cmd/gateway-conformance"], cwd=src)

        _install(dest, build)
    (paths.conformance_dir / "HOME").write_text(f"{home}\n")
    fixtures = paths.conformance_fixtures
    if not fixtures.is_dir():
        tmp = Path(tempfile.mkdtemp(dir=fixtures.parent, prefix=".fixtures-"))
        _run([str(dest), "extract-fixtures", "--directory", str(tmp)], cwd=home,
             env=_env(GATEWAY_CONFORMANCE_HOME=str(home)), nice=False)
        if not any(tmp.rglob("*.car")):
            raise RuntimeError(f"extract-fixtures wrote no CAR into {tmp}")
        os.replace(tmp, fixtures)


def build_curl8(dest: Path) -> None:
    """curl 8 from Debian's backports, unpacked beside a script that runs it (see above)."""
    def build(tmp: Path, out: Path) -> None:
        apt = tmp / "apt"
        for sub in ("lists/partial", "cache/archives/partial"):
            (apt / sub).mkdir(parents=True)
        (apt / "sources.list").write_text(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
            f"http://deb.debian.org/debian {CURL8_SUITE} main\n")
        opts = [f"-oDir::Etc::SourceList={apt / 'sources.list'}",
                "-oDir::Etc::SourceParts=/nonexistent", f"-oDir::State::Lists={apt / 'lists'}",
                f"-oDir::Cache={apt / 'cache'}", "-oAPT::Sandbox::User=root", "-qq"]
        _run(["apt-get", *opts, "update"], nice=False)
        _run(["apt-get", *opts, "download", "curl", "libcurl4"], cwd=tmp, nice=False)
        debs = sorted(tmp.glob("*.deb"))
        if len(debs) != 2:
            raise RuntimeError(f"apt-get download curl libcurl4 gave {[d.name for d in debs]}")
        root = dest.parent / "root"
        shutil.rmtree(root, ignore_errors=True)
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(root)], nice=False)
        libs = root / "usr" / "lib" / "x86_64-linux-gnu"
        out.write_text(f'#!/bin/sh\nLD_LIBRARY_PATH="{libs}" exec "{root}/usr/bin/curl" "$@"\n')
        out.chmod(0o755)
        version = subprocess.run([str(out), "--version"], capture_output=True, text=True)
        if "ipfs" not in version.stdout:
            raise RuntimeError(f"the unpacked curl has no ipfs scheme:\n{version.stdout}"
                               f"{version.stderr}")

    _install(dest, build)


def _ensure_tools() -> None:
    """kubo and lassie only ever run inside ``unshare -n`` with loopback brought up by ``ip``."""
    need = [pkg for tool, pkg in (("ip", "iproute2"), ("unshare", "util-linux"))
            if shutil.which(tool) is None]
    if need:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *need], check=True, env=env)


def main() -> int:
    if os.environ.get("CARGET_SKIP_PEERS") == "1":
        print("build_peers: CARGET_SKIP_PEERS=1, building no peers (their tests skip)")
        return 0
    paths = Paths(peers_dir())
    paths.root.mkdir(parents=True, exist_ok=True)
    _ensure_tools()
    steps = [
        (f"kubo {KUBO_VERSION}", paths.kubo, lambda: build_kubo(paths.kubo)),
        (f"go-car {GOCAR_VERSION} (tests/interop/gocar)", paths.gocar,
         lambda: build_gocar(paths.gocar)),
        (f"lassie {LASSIE_VERSION}", paths.lassie, lambda: build_lassie(paths.lassie)),
        (f"gateway-conformance {CONFORMANCE_VERSION}", paths.conformance_fixtures,
         lambda: build_conformance(paths)),
        (f"curl 8 ({CURL8_SUITE})", paths.curl8, lambda: build_curl8(paths.curl8)),
    ]
    failed = []
    with open(paths.root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name, target, build in steps:
            if target.exists():
                print(f"build_peers: {name}: cached at {target}")
                continue
            refused = paths.unavailable(target)
            if refused:  # a refusal is final: not asked again on this machine
                print(f"build_peers: {name}: not served by the Go module proxy ({refused}); "
                      f"its tests skip (delete {target.parent / 'UNAVAILABLE'} to ask again)",
                      file=sys.stderr)
                continue
            start = time.monotonic()
            try:
                build()
            except Unavailable as e:
                target.parent.mkdir(parents=True, exist_ok=True)
                (target.parent / "UNAVAILABLE").write_text(f"{e}\n")
                print(f"build_peers: {name}: the Go module proxy does not serve it ({e}); "
                      "its tests skip", file=sys.stderr)
                continue
            except (RuntimeError, OSError) as e:
                print(f"build_peers: {name}: FAILED: {e}", file=sys.stderr)
                failed.append(name)
                continue
            print(f"build_peers: {name}: built in {time.monotonic() - start:.0f} s at {target}")
    if failed:
        print(f"build_peers: could not build {', '.join(failed)} "
              "(CARGET_SKIP_PEERS=1 skips the peers)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
