"""Path-gateway answers (`GET /ipfs/CID/file` with no trustless format: the content
itself) from a real `carget serve` process, to curl and Python's urllib; and the
conformance suite's path-gateway expectations over its fixture CARs."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from servehelp import FIXTURES, needs_curl, run_curl

from carget.server.testing import running_gateway, serve_process

IMMUTABLE = "public, max-age=29030400, immutable"



def _headers(raw: bytes) -> tuple[int, dict[str, str]]:
    """Status and headers (lower-case names) of the last answer curl's -D printed."""
    blocks = [b for b in raw.decode("latin-1").split("\r\n\r\n") if b.startswith("HTTP/")]
    lines = blocks[-1].split("\r\n")
    status = int(lines[0].split()[1])
    out: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        out[k.strip().lower()] = v.strip()
    return status, out


@dataclass
class Served:
    url: str
    root: str
    cids: dict[str, str]  # name as `added` printed it -> CID
    tree: Path
    log: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`carget serve -v --log FILE` over a tree (kubo's default import: CIDv0, dag-pb
    leaves of 256 KiB, so file bytes go out from inside the leaves' framing)."""
    base = tmp_path_factory.mktemp("pathgw")
    tree = base / "site"
    (tree / "docs").mkdir(parents=True)
    (tree / "www").mkdir()
    rng = random.Random(14)
    (tree / "big.bin").write_bytes(rng.randbytes(1_500_000))
    (tree / "hello.txt").write_bytes(b"hello world\n")
    (tree / "docs" / "README").write_bytes(b"plain text, no extension\n")
    (tree / "docs" / "page").write_bytes(b"<!DOCTYPE html><html><body>x</body></html>\n")
    (tree / "docs" / "blob").write_bytes(bytes(range(256)) * 4)
    (tree / "www" / "index.html").write_bytes(b"<html><body>index</body></html>\n")
    (tree / "www" / "other.css").write_bytes(b"body{}\n")
    (tree / "empty.txt").write_bytes(b"")
    log = base / "access.log"
    with serve_process(["--log", str(log), str(tree)]) as sp:
        yield Served(sp.url, sp.added["site"], sp.added, tree, log)


@needs_curl
def test_curl_gets_a_file_with_kubos_headers(served: Served) -> None:
    r = run_curl("-D", "-", "-o", "/dev/null", f"{served.url}/ipfs/{served.root}/big.bin")
    status, h = _headers(r.stdout)
    assert status == 200
    assert h["content-length"] == "1500000"
    assert h["content-type"] == "application/octet-stream"
    assert h["etag"] == f'"{served.cids["site/big.bin"]}"'
    assert h["cache-control"] == IMMUTABLE
    assert h["accept-ranges"] == "bytes"
    assert h["x-ipfs-path"] == f"/ipfs/{served.root}/big.bin"
    assert h["x-ipfs-roots"] == f"{served.root},{served.cids['site/big.bin']}"
    body = run_curl(f"{served.url}/ipfs/{served.root}/big.bin")
    assert body.returncode == 0
    assert hashlib.sha256(body.stdout).digest() == \
        hashlib.sha256((served.tree / "big.bin").read_bytes()).digest()
    # a file's own CID works as well as a path to it
    alone = run_curl(f"{served.url}/ipfs/{served.cids['site/hello.txt']}")
    assert alone.stdout == b"hello world\n"


@needs_curl
@pytest.mark.parametrize(("rng", "first", "last"), [
    ("0-0", 0, 0),
    ("1000-1999", 1000, 1999),
    ("262140-262150", 262140, 262150),  # across a leaf boundary
    ("1400000-", 1400000, 1499999),
    ("-10", 1499990, 1499999),
    ("1499999-99999999", 1499999, 1499999),  # clamped to the end
])
def test_curl_range_gets_206_with_those_bytes(served: Served, rng: str, first: int,
                                              last: int) -> None:
    r = run_curl("-D", "/dev/stderr", "-r", rng, f"{served.url}/ipfs/{served.root}/big.bin")
    status, h = _headers(r.stderr)
    assert status == 206
    assert h["content-range"] == f"bytes {first}-{last}/1500000"
    assert r.stdout == (served.tree / "big.bin").read_bytes()[first:last + 1]


@needs_curl
def test_unsatisfiable_range_is_416_and_multi_ranges_get_the_first(
        served: Served) -> None:
    r = run_curl("-D", "-", "-o", "/dev/null", "-r", "1500000-",
              f"{served.url}/ipfs/{served.root}/big.bin")
    status, h = _headers(r.stdout)
    assert status == 416 and h["content-range"] == "bytes */1500000"
    # as kubo 0.43.1: the first range alone (the conformance suite takes it, or multipart)
    r = run_curl("-D", "-", "-r", "6-10,0-4", f"{served.url}/ipfs/{served.root}/hello.txt")
    status, h = _headers(r.stdout)
    assert status == 206 and h["content-range"] == "bytes 6-10/12"
    assert r.stdout.endswith(b"\r\n\r\nworld")


@needs_curl
def test_if_none_match_gets_304(served: Served) -> None:
    etag = f'"{served.cids["site/hello.txt"]}"'
    for value in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        r = run_curl("-D", "-", "-H", f"If-None-Match: {value}",
                  f"{served.url}/ipfs/{served.root}/hello.txt")
        status, h = _headers(r.stdout)
        assert status == 304 and h["etag"] == etag, value
        assert r.stdout.endswith(b"\r\n\r\n")  # no body
    r = run_curl("-D", "-", "-o", "/dev/null", "-H", 'If-None-Match: "other"',
              f"{served.url}/ipfs/{served.root}/hello.txt")
    assert _headers(r.stdout)[0] == 200


@needs_curl
def test_head_gives_the_headers_only(served: Served) -> None:
    r = run_curl("-I", f"{served.url}/ipfs/{served.root}/big.bin")
    status, h = _headers(r.stdout)
    assert status == 200 and h["content-length"] == "1500000"
    assert r.stdout.endswith(b"\r\n\r\n")


@needs_curl
def test_directory_redirects_to_the_slash_then_lists(served: Served) -> None:
    r = run_curl("-D", "-", "-o", "/dev/null", f"{served.url}/ipfs/{served.root}/docs?x=1")
    status, h = _headers(r.stdout)
    assert status == 301
    assert h["location"] == f"/ipfs/{served.root}/docs/?x=1"
    r = run_curl("-L", "-D", "/dev/stderr", f"{served.url}/ipfs/{served.root}/docs")
    status, h = _headers(r.stderr)
    assert status == 200 and h["content-type"] == "text/html; charset=utf-8"
    assert h["etag"] == f'"DirIndex-carget-1_CID-{served.cids["site/docs"]}"'
    assert h["x-ipfs-path"] == f"/ipfs/{served.root}/docs/"
    page = r.stdout.decode()
    assert "Index of" in page
    for name in ("README", "page", "blob"):
        cid = served.cids[f"site/docs/{name}"]
        assert f'href="/ipfs/{served.root}/docs/{name}">{name}</a>' in page
        assert f'href="/ipfs/{cid}?filename={name}">{cid}</a>' in page
    assert ">1035<" in page  # blob's size (its DAG size: 1024 bytes and framing)
    assert f'href="/ipfs/{served.root}/docs/..">..</a>' in page
    # the root's listing has no way up
    top = run_curl(f"{served.url}/ipfs/{served.root}/").stdout.decode()
    assert "Index of" in top and ">..</a>" not in top
    # a listing's ETag, or the directory's CID, makes it a 304
    for tag in (h["etag"], f'W/"{served.cids["site/docs"]}"'):
        r = run_curl("-D", "-", "-H", f"If-None-Match: {tag}",
                  f"{served.url}/ipfs/{served.root}/docs/")
        assert _headers(r.stdout)[0] == 304


@needs_curl
def test_directory_with_index_html_serves_it(served: Served) -> None:
    r = run_curl("-D", "/dev/stderr", f"{served.url}/ipfs/{served.root}/www/")
    status, h = _headers(r.stderr)
    assert status == 200 and r.stdout == b"<html><body>index</body></html>\n"
    assert h["content-type"] == "text/html"
    assert h["etag"] == f'"{served.cids["site/www"]}"'
    assert h["cache-control"] == IMMUTABLE
    assert h["x-ipfs-roots"] == f"{served.root},{served.cids['site/www']}"


@needs_curl
def test_filename_and_download_set_content_disposition(served: Served) -> None:
    url = f"{served.url}/ipfs/{served.cids['site/hello.txt']}"
    _, h = _headers(run_curl("-I", f"{url}?filename=r%C3%A9sum%C3%A9.txt").stdout)
    assert h["content-disposition"] == \
        "inline; filename=\"r_sum_.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt"
    assert h["content-type"] == "text/plain; charset=utf-8"
    _, h = _headers(run_curl("-I", f"{url}?filename=a%20b.bin&download=true").stdout)
    assert h["content-disposition"] == \
        "attachment; filename=\"a%20b.bin\"; filename*=UTF-8''a%20b.bin"
    assert h["content-type"] == "application/octet-stream"  # from the name, not the bytes
    _, h = _headers(run_curl("-I", url).stdout)
    assert "content-disposition" not in h


def test_urllib_gets_files_and_follows_the_redirect(served: Served) -> None:
    def get(path: str) -> tuple[int, str, bytes]:
        with urllib.request.urlopen(f"{served.url}{path}", timeout=20) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()

    status, _, body = get(f"/ipfs/{served.root}/big.bin")
    assert status == 200 and body == (served.tree / "big.bin").read_bytes()
    # types from the name, else sniffed from the bytes
    assert get(f"/ipfs/{served.root}/docs/README")[1] == "text/plain; charset=utf-8"
    assert get(f"/ipfs/{served.root}/docs/page")[1] == "text/html"
    assert get(f"/ipfs/{served.root}/docs/blob")[1] == "application/octet-stream"
    assert get(f"/ipfs/{served.root}/www/other.css")[1] == "text/css; charset=utf-8"
    assert get(f"/ipfs/{served.root}/empty.txt")[2] == b""
    status, _, body = get(f"/ipfs/{served.root}/docs")  # 301, followed
    assert status == 200 and b"Index of" in body
    with pytest.raises(urllib.error.HTTPError) as err:
        get(f"/ipfs/{served.root}/no-such-file")
    assert err.value.code == 404


def test_trustless_answers_stay_as_they_were(served: Served) -> None:
    r = httpx.get(f"{served.url}/ipfs/{served.cids['site/hello.txt']}?format=raw", timeout=20)
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.ipld.raw"
    r = httpx.get(f"{served.url}/ipfs/{served.root}/hello.txt",
                  headers={"Accept": "application/vnd.ipld.car"}, timeout=20)
    assert r.status_code == 200 and r.headers["content-type"].startswith(
        "application/vnd.ipld.car")
    r = httpx.get(f"{served.url}/ipfs/{served.root}/hello.txt",
                  headers={"Accept": "application/json"}, timeout=20)
    # json of a UnixFS file is the file itself, with its own type (kubo 0.43.1)
    assert r.status_code == 200 and r.content == b"hello world\n"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    r = httpx.get(f"{served.url}/ipfs/{served.root}/hello.txt",
                  headers={"Accept": "application/vnd.ipld.dag-json"}, timeout=20)
    assert r.status_code == 406  # no conversion between codecs (IPIP-524)


def test_access_log_has_a_line_per_request(served: Served) -> None:
    path = f"/ipfs/{served.root}/hello.txt?logged=1"
    httpx.get(f"{served.url}{path}", timeout=20)
    httpx.get(f"{served.url}/ipfs/{served.root}/missing-for-the-log", timeout=20)
    # a line is written once its answer is out, so the client may read the log first
    for _ in range(200):
        lines = served.log.read_text().splitlines()
        if any("missing-for-the-log" in ln for ln in lines):
            break
        time.sleep(0.05)
    mine = [ln for ln in lines if f" GET {path} " in ln]
    assert len(mine) == 1
    _, peer, method, target, status, sent, secs = mine[0].split(" ")
    assert (peer, method, target, status, sent) == ("127.0.0.1", "GET", path, "200", "12")
    assert secs.endswith("s") and float(secs[:-1]) >= 0
    assert any(" missing-for-the-log 404 " in ln or "/missing-for-the-log 404 " in ln
               for ln in lines)


def test_changed_file_gets_a_log_line_and_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "f.bin"
    f.write_bytes(b"a" * 300_000)
    with serve_process(["-v", str(f)]) as sp:
        cid = next(iter(sp.added.values()))
        f.write_bytes(b"b" * 300_000)
        with pytest.raises(httpx.HTTPError):  # cut, or refused before the status line
            r = httpx.get(f"{sp.url}/ipfs/{cid}", timeout=20)
            r.raise_for_status()
        sp.proc.send_signal(signal.SIGTERM)
        sp.proc.wait(timeout=20)
        assert sp.proc.stderr is not None
        err = sp.proc.stderr.read()
    assert f"{f} changed since it was indexed" in err
    assert f" GET /ipfs/{cid} " in err


# --- the conformance suite's path-gateway expectations, over its fixtures ------------------

@pytest.fixture(scope="module")
def fixtures_gateway() -> Iterator[str]:
    cars = [os.path.join(FIXTURES, p) for p in (
        "dir_listing/fixtures.car", "path_gateway_unixfs/symlink.car",
        "path_gateway_unixfs/dir-with-files.car")]
    with running_gateway(cars) as url:
        yield url


def _roots(car: str) -> str:
    from carget.car.reader import open_car_store

    with open_car_store(os.path.join(FIXTURES, car)) as store:
        return str(store.header.roots[0])


def test_conformance_dir_listing(fixtures_gateway: str) -> None:
    """tests/path_gateway_unixfs_test.go, TestUnixFSDirectoryListing."""
    root = _roots("dir_listing/fixtures.car")
    r = httpx.get(f"{fixtures_gateway}/ipfs/{root}/")
    assert "Index of" in r.text and f'<a href="/ipfs/{root}/">..</a>' not in r.text
    r = httpx.get(f"{fixtures_gateway}/ipfs/{root}/ą/ę")
    assert r.status_code == 301
    assert r.headers["location"] == f"/ipfs/{root}/%C4%85/%C4%99/"
    r = httpx.get(f"{fixtures_gateway}/ipfs/{root}/ą/ę/")
    assert '"DirIndex-' in r.headers["etag"]
    page = r.text
    assert (f'/ipfs/<a href="/ipfs/{root}">{root}</a>/<a href="/ipfs/{root}/%C4%85">ą</a>/'
            f'<a href="/ipfs/{root}/%C4%85/%C4%99">ę</a>') in page
    assert f'<a href="/ipfs/{root}/%C4%85/%C4%99/..">..</a>' in page
    assert f'<a href="/ipfs/{root}/%C4%85/%C4%99/file-%C5%BA%C5%82.txt">file-źł.txt</a>' \
        in page
    file_cid = httpx.get(f"{fixtures_gateway}/ipfs/{root}/ą/ę/file-źł.txt").headers["etag"]
    assert (f'<a class="ipfs-hash" translate="no" href="/ipfs/{file_cid.strip(chr(34))}'
            '?filename=file-%25C5%25BA%25C5%2582.txt">') in page
    assert httpx.get(f"{fixtures_gateway}/ipfs/{root}/i-do-not-exist").status_code == 404


def test_conformance_symlink(fixtures_gateway: str) -> None:
    """tests/path_gateway_unixfs_test.go, TestGatewaySymlink."""
    root = _roots("path_gateway_unixfs/symlink.car")
    page = httpx.get(f"{fixtures_gateway}/ipfs/{root}/").text
    assert ">foo<" in page and ">bar<" in page
    r = httpx.get(f"{fixtures_gateway}/ipfs/{root}/bar")
    assert r.status_code == 200 and r.content == b"foo"


def test_only_if_cached_for_path_answers(fixtures_gateway: str) -> None:
    root = _roots("path_gateway_unixfs/dir-with-files.car")
    r = httpx.head(f"{fixtures_gateway}/ipfs/{root}/", headers={"Cache-Control": "only-if-cached"})
    assert r.status_code == 200
    r = httpx.head(f"{fixtures_gateway}/ipfs/QmYzfKSE55XCjD1MW128RfciAf2DViABhEiXfgVFMabSjN",
                   headers={"Cache-Control": "only-if-cached"})
    assert r.status_code == 412
