"""Fixtures for the lima tests: sample files, a lima-style template, a static HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import random
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from carget.cli import main

# A template shaped like lima's templates/ubuntu-24.04.yaml (images with location/arch/
# digest, a fallback entry without digest, mounts) and default.yaml's containerd archives,
# written for these tests. Comments, blank lines, quoting and spacing vary on purpose:
# annotate must leave every one of these bytes alone.
TEMPLATE = """\
# carget test template: the shape of a lima template, with comments everywhere.
#   annotate must not touch a byte of this.
minimumLimaVersion: "1.0.0"

images:
# Pinned images first; lima tries them in order and uses the first of its arch.
- location: "{base}/releases/20250101/test-cloudimg-amd64.img"
  arch: "x86_64"
  digest: "{digest_amd64}"     # pinned on 2025-01-01
  kernel:
      location:   {base}/releases/20250101/vmlinuz-amd64
      digest:     {digest_kernel}
      cmdline: "console=ttyS0"
-   location: '{base}/releases/20250101/test-cloudimg-arm64.img'
    # a comment inside an entry
    arch: aarch64
    digest: '{digest_arm64}'
- location: "{base}/releases/20250101/test-cloudimg-riscv64.img"
  arch: "riscv64"
  digest: "{digest_riscv64}"

# Fallback to the latest image (no digest: the file behind it moves).
- location: "{base}/releases/current/test-cloudimg-amd64.img"
  arch: "x86_64"

mounts:
- location: "~"
- location: "/tmp/lima"
  writable: true

containerd:
  system: false
  user: true
  archives:
    - location: {base}/nerdctl/nerdctl-full-9.9.9-linux-amd64.tar.gz   # the full bundle
      arch: x86_64
      digest: {digest_nerdctl_amd64}
    - location: {base}/nerdctl/nerdctl-full-9.9.9-linux-arm64.tar.gz
      arch:     aarch64
      digest:   {digest_nerdctl_arm64}
# trailing comment, and no newline at the end"""

#: relative path under the served root -> (size, seed); sizes span one and several chunks
FILES = {
    "releases/20250101/test-cloudimg-amd64.img": (700_000, 1),
    "releases/20250101/vmlinuz-amd64": (30_000, 2),
    "releases/20250101/test-cloudimg-arm64.img": (300_000, 3),
    "releases/20250101/test-cloudimg-riscv64.img": (5_000, 4),
    "releases/current/test-cloudimg-amd64.img": (700_000, 1),
    "nerdctl/nerdctl-full-9.9.9-linux-amd64.tar.gz": (270_000, 5),
    "nerdctl/nerdctl-full-9.9.9-linux-arm64.tar.gz": (1_000, 6),
}

DIGEST_FIELDS = {
    "digest_amd64": "releases/20250101/test-cloudimg-amd64.img",
    "digest_kernel": "releases/20250101/vmlinuz-amd64",
    "digest_arm64": "releases/20250101/test-cloudimg-arm64.img",
    "digest_riscv64": "releases/20250101/test-cloudimg-riscv64.img",
    "digest_nerdctl_amd64": "nerdctl/nerdctl-full-9.9.9-linux-amd64.tar.gz",
    "digest_nerdctl_arm64": "nerdctl/nerdctl-full-9.9.9-linux-arm64.tar.gz",
}


def sample_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Site:
    """Files on disk under ``root`` (the served tree) and their digests."""

    root: Path
    data: dict[str, bytes]
    digests: dict[str, str] = field(default_factory=dict)

    def template(self, base: str, **overrides: str) -> str:
        values = {k: sha256(self.data[v]) for k, v in DIGEST_FIELDS.items()}
        values.update(overrides)
        return TEMPLATE.format(base=base, **values)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    root = tmp_path / "site"
    data: dict[str, bytes] = {}
    for rel, (size, seed) in FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        data[rel] = sample_bytes(size, seed)
        p.write_bytes(data[rel])
    return Site(root, data)


class _Handler(http.server.SimpleHTTPRequestHandler):
    counts: Counter[str]

    def do_GET(self) -> None:
        self.counts[self.path] += 1
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class StaticServer:
    base: str
    counts: Counter[str]


@pytest.fixture
def static_server(site: Site) -> Iterator[StaticServer]:
    """A plain HTTP server on loopback serving ``site.root``, counting GETs per path."""
    counts: Counter[str] = Counter()
    handler = type("H", (_Handler,), {"counts": counts})

    def factory(*args: object) -> http.server.SimpleHTTPRequestHandler:
        return handler(*args, directory=str(site.root))  # type: ignore[arg-type]

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), factory)  # type: ignore[arg-type]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield StaticServer(f"http://127.0.0.1:{httpd.server_address[1]}", counts)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``carget ARGS`` in-process; return (exit code, stdout, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), for before/after comparisons."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
