"""Answers that are one block as it is, from a real `carget serve`: ``format=raw`` at the
end of a path, the dag-json/dag-cbor/json/cbor codecs as themselves (IPIP-524: no
conversion; a mismatched format is a 406), ``Range`` over a block, ``?filename=`` on raw
and CAR answers, and the HTML page a browser gets for a dag-cbor document. What kubo
0.43.1's gateway answers and the gateway-conformance suite (path-gateway dag/raw tests)
expect."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servehelp import FIXTURES

from carget.car.encoder import encode_header, section_prefix
from carget.cid import CID, DAG_JSON, RAW
from carget.server.testing import running_gateway

# trustless_gateway_car/subdir-with-two-single-block-files.car: /subdir/ascii.txt
TWO = "bafybeietjm63oynimmv5yyqay33nui4y4wx6u3peezwetxgiwvfmelutzu"
TWO_SUB = "bafybeiggghzz6dlue3m6nb2dttnbrygxh3lrjl5764f2m4gq7dgzdt55o4"
ASCII = "bafkreifkam6ns4aoolg3wedr4uzrs3kvq66p4pecirz6y2vlrngla62mxm"
# path_gateway_dag/dag-cbor-traversal.car: {foo: {link: → {bar: → {hello: "…"}}, …}}
CBOR_ROOT = "bafyreibs4utpgbn7uqegmd2goqz4bkyflre2ek2iwv743fhvylwi4zeeim"
CBOR_HELLO = bytes.fromhex("a16568656c6c6f7274686973206973206e6f742061206c696e6b")
JSON_CODEC, CBOR_CODEC = 0x0200, 0x51
#: blocks made here: a dag-json document, a plain JSON one, a plain CBOR one
DAG_JSON_DOC = b'{"a":[1,2],"b":"x"}'
PLAIN_JSON = b'{\n\t"test": "plain json"\n}\n'
PLAIN_CBOR = bytes.fromhex("a164746573746a706c61696e206a736f6e")


def _car(path: Path, blocks: list[tuple[CID, bytes]]) -> str:
    with open(path, "wb") as f:
        f.write(encode_header([blocks[0][0]]))
        for cid, data in blocks:
            f.write(section_prefix(cid, len(data)) + data)
    return str(path)


@pytest.fixture(scope="module")
def made() -> dict[str, CID]:
    return {"dag-json": CID.of(DAG_JSON_DOC, DAG_JSON), "json": CID.of(PLAIN_JSON, JSON_CODEC),
            "cbor": CID.of(PLAIN_CBOR, CBOR_CODEC)}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, made: dict[str, CID]) -> Iterator[str]:
    d = tmp_path_factory.mktemp("blocks")
    cars = [_car(d / f"{name}.car", [(cid, data)]) for (name, cid), data in
            zip(made.items(), (DAG_JSON_DOC, PLAIN_JSON, PLAIN_CBOR), strict=True)]
    cars += [os.path.join(FIXTURES, p) for p in (
        "trustless_gateway_car/subdir-with-two-single-block-files.car",
        "path_gateway_dag/dag-cbor-traversal.car")]
    with running_gateway(cars) as url:
        yield url


def test_raw_block_at_the_end_of_a_path(gw: str) -> None:
    r = httpx.get(f"{gw}/ipfs/{TWO}/subdir/ascii.txt?format=raw")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/vnd.ipld.raw"
    assert CID.of(r.content, RAW) == CID.parse(ASCII)
    assert r.headers["x-ipfs-roots"] == f"{TWO},{TWO_SUB},{ASCII}"
    assert r.headers["etag"] == f'"{ASCII}.raw"'
    assert r.headers["content-disposition"].startswith(f'attachment; filename="{ASCII}.bin"')
    # a directory's own block, with or without the trailing slash, and over Accept
    for path in ("subdir", "subdir/"):
        r = httpx.get(f"{gw}/ipfs/{TWO}/{path}",
                      headers={"Accept": "application/vnd.ipld.raw"})
        assert r.status_code == 200 and str(CID.of(r.content, 0x70)) == TWO_SUB
    r = httpx.get(f"{gw}/ipfs/{TWO}/subdir/nope?format=raw")
    assert r.status_code == 404


def test_raw_block_takes_a_range_and_a_filename(gw: str) -> None:
    r = httpx.get(f"{gw}/ipfs/{ASCII}?format=raw", headers={"Range": "bytes=2-5"})
    whole = httpx.get(f"{gw}/ipfs/{ASCII}?format=raw").content
    assert r.status_code == 206 and r.content == whole[2:6]
    assert r.headers["content-range"] == f"bytes 2-5/{len(whole)}"
    r = httpx.get(f"{gw}/ipfs/{ASCII}?filename=foobar.bin",
                  headers={"Accept": "application/vnd.ipld.raw"})
    assert r.headers["content-disposition"] == \
        "attachment; filename=\"foobar.bin\"; filename*=UTF-8''foobar.bin"


def test_a_range_past_a_raw_block_is_416(gw: str) -> None:
    whole = httpx.get(f"{gw}/ipfs/{ASCII}?format=raw").content
    r = httpx.get(f"{gw}/ipfs/{ASCII}?format=raw",
                  headers={"Range": f"bytes={len(whole)}-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(whole)}"
    assert r.headers["etag"] and "immutable" in r.headers["cache-control"]
    assert b"block's" in r.content


def test_car_answer_takes_a_filename(gw: str) -> None:
    r = httpx.get(f"{gw}/ipfs/{TWO}/subdir?format=car&filename=x.car")
    assert r.status_code == 200
    assert r.headers["content-disposition"] == \
        "attachment; filename=\"x.car\"; filename*=UTF-8''x.car"


@pytest.mark.parametrize(("name", "ctype", "inline", "ext"), [
    ("dag-json", "application/vnd.ipld.dag-json", True, "json"),
    ("json", "application/json", True, "json"),
    ("cbor", "application/cbor", False, "cbor"),
])
def test_codec_block_is_served_as_itself(gw: str, made: dict[str, CID], name: str,
                                         ctype: str, inline: bool, ext: str) -> None:
    cid = made[name]
    for r in (httpx.get(f"{gw}/ipfs/{cid}"), httpx.get(f"{gw}/ipfs/{cid}?format={name}"),
              httpx.get(f"{gw}/ipfs/{cid}", headers={"Accept": ctype})):
        assert r.status_code == 200
        assert CID.of(r.content, cid.codec) == cid
        assert r.headers["content-type"] == ctype
        assert r.headers["etag"] == f'"{cid}.{name}"'
        assert r.headers["content-disposition"].startswith(
            f'{"inline" if inline else "attachment"}; filename="{cid}.{ext}"')
        assert r.headers["cache-control"] == "public, max-age=29030400, immutable"
    r = httpx.head(f"{gw}/ipfs/{cid}")
    assert r.status_code == 200 and r.headers["content-type"] == ctype
    r = httpx.get(f"{gw}/ipfs/{cid}", headers={"Range": "bytes=1-3"})
    assert r.status_code == 206 and len(r.content) == 3
    r = httpx.get(f"{gw}/ipfs/{cid}?filename=foobar.{ext}&download=true")
    assert r.headers["content-disposition"].startswith(f'attachment; filename="foobar.{ext}"')


def test_dag_json_as_plain_json_and_mismatches_are_406(gw: str, made: dict[str, CID]
                                                      ) -> None:
    r = httpx.get(f"{gw}/ipfs/{made['dag-json']}?format=json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert json.loads(r.content) == {"a": [1, 2], "b": "x"}
    for cid, fmt in ((made["dag-json"], "cbor"), (made["dag-json"], "dag-cbor"),
                     (made["json"], "dag-json"), (made["cbor"], "json"),
                     (CID.parse(CBOR_ROOT), "dag-json")):
        assert httpx.get(f"{gw}/ipfs/{cid}?format={fmt}").status_code == 406, (cid, fmt)
    # a UnixFS file cannot become a dag-* document; json/cbor of it is the file itself
    assert httpx.get(f"{gw}/ipfs/{ASCII}?format=dag-json").status_code == 406
    r = httpx.get(f"{gw}/ipfs/{TWO}/subdir/ascii.txt?format=json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")


def test_dag_cbor_path_answers(gw: str) -> None:
    r = httpx.get(f"{gw}/ipfs/{CBOR_ROOT}/foo/link/bar?format=dag-cbor")
    assert r.status_code == 200 and r.content == CBOR_HELLO
    assert r.headers["content-type"] == "application/vnd.ipld.dag-cbor"
    r = httpx.get(f"{gw}/ipfs/{CBOR_ROOT}/foo/link/bar")
    assert r.status_code == 200 and r.content == CBOR_HELLO
    # the path ends inside the block, at no link: kubo's 501
    assert httpx.get(f"{gw}/ipfs/{CBOR_ROOT}/foo?format=dag-cbor").status_code == 501
    assert httpx.get(f"{gw}/ipfs/{CBOR_ROOT}/foo/i-do-not-exist").status_code == 404


def test_browser_gets_a_page_about_a_dag_cbor_block(gw: str) -> None:
    r = httpx.get(f"{gw}/ipfs/{CBOR_ROOT}/",
                  headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["etag"].startswith('"DagIndex-')
    assert "content-disposition" not in r.headers
    assert "</html>" in r.text and CBOR_ROOT in r.text
    assert "bafyreig5alecq2l2akgajxywgnv22kuxh6xcagsnelepylqovt4t5jxt6u" in r.text  # its link
    # an explicit format is the block, whatever the browser accepts
    r = httpx.get(f"{gw}/ipfs/{CBOR_ROOT}?format=dag-cbor", headers={"Accept": "text/html"})
    assert r.headers["content-type"] == "application/vnd.ipld.dag-cbor"


# --- JSON in UnixFS files: named application/json by its bytes, as kubo 0.43 -------------

JSON_FILES = {
    "obj": (b'{ "a": 1 }\n', "application/json"),
    "arr": (b"[1,2]", "application/json"),
    "spaced": (b'  {"x":\n [true]}  ', "application/json"),
    # longer than the sniffing window: well-formed up to the cut is enough
    "big": (json.dumps({f"k{i}": "v" * 20 for i in range(200)}).encode(), "application/json"),
    "num": (b"123", "text/plain; charset=utf-8"),
    "str": (b'"str"', "text/plain; charset=utf-8"),
    "cut": (b'{ "a": ', "text/plain; charset=utf-8"),
    "bigbad": (b"[" + b"1," * 300 + b"]]", "text/plain; charset=utf-8"),
    "comma": (b'{"a": 1,}', "text/plain; charset=utf-8"),
    # kubo 0.43.1 looks at the first 4096 bytes: a control byte at 4095 makes it binary
    "bin4095": (b"a" * 4095 + b"\x00\x01" + b"b" * 100, "application/octet-stream"),
    "bin4096": (b"a" * 4096 + b"\x00\x01" + b"b" * 100, "text/plain; charset=utf-8"),
}


@pytest.fixture(scope="module")
def json_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    d = tmp_path_factory.mktemp("jsonfiles")
    for name, (data, _) in JSON_FILES.items():
        (d / name).write_bytes(data)
    cids = {name: str(CID.of(data, RAW)) for name, (data, _) in JSON_FILES.items()}
    with running_gateway([str(d / n) for n in JSON_FILES], cid_version=1) as url:
        yield url, cids


@pytest.mark.parametrize("name", list(JSON_FILES))
def test_json_file_gets_application_json(json_files: tuple[str, dict[str, str]],
                                         name: str) -> None:
    url, cids = json_files
    r = httpx.get(f"{url}/ipfs/{cids[name]}")
    assert r.status_code == 200 and r.content == JSON_FILES[name][0]
    assert r.headers["content-type"] == JSON_FILES[name][1]
    if JSON_FILES[name][1] == "application/json":
        r = httpx.get(f"{url}/ipfs/{cids[name]}", headers={"Accept": "application/json"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        r = httpx.get(f"{url}/ipfs/{cids[name]}?format=json",
                      headers={"Accept": "application/vnd.ipld.raw"})
        assert r.status_code == 200 and r.content == JSON_FILES[name][0]
