"""Path-gateway answers side by side: kubo v0.43.1's own gateway (`ipfs daemon --offline`
on 127.0.0.1, inside `unshare -n`) and `carget serve`, over the same tree added to both
with the same flags, asked the same requests by curl. Status, the headers a client acts on
and the bodies of files must agree."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from gopeers import carget_cmd, isolated, require

#: (name, curl arguments after the URL's path); every request goes to both gateways
REQUESTS = [
    ("file", "/t/big.bin", []),
    ("text", "/t/a.txt", []),
    ("noext", "/t/sub/README", []),
    ("html", "/t/sub/page", []),
    ("range", "/t/big.bin", ["-r", "1000-299999"]),
    ("suffix", "/t/big.bin", ["-r", "-100"]),
    ("past", "/t/big.bin", ["-r", "900000000-"]),
    ("head", "/t/big.bin", ["-I"]),
    ("inm", "/t/a.txt", ["-H", "If-None-Match: \"A_CID\""]),
    ("inm-weak", "/t/a.txt", ["-H", "If-None-Match: W/\"A_CID\""]),
    ("redirect", "/t/sub", []),
    ("index", "/t/www/", []),
    ("filename", "/t/a.txt?filename=r%C3%A9sum%C3%A9.txt", []),
    ("download", "/t/a.txt?filename=x.bin&download=true", []),
    ("missing", "/t/no-such", []),
]
#: headers a client acts on, compared as they are
SAME = ("content-type", "content-length", "etag", "cache-control", "content-range",
        "location", "content-disposition", "ipfs-uri", "x-ipfs-roots", "accept-ranges")


def _parse(raw: bytes) -> tuple[int, dict[str, str]]:
    blocks = [b for b in raw.decode("latin-1").split("\r\n\r\n") if b.startswith("HTTP/")]
    lines = blocks[-1].split("\r\n")
    out: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        out[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), out


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    ipfs = require("kubo")
    d = tmp_path_factory.mktemp("kubo-pathgw")
    rng = random.Random(14)
    tree = d / "t"
    (tree / "sub").mkdir(parents=True)
    (tree / "www").mkdir()
    (tree / "big.bin").write_bytes(rng.randbytes(700_000))
    (tree / "a.txt").write_bytes(b"hello\n")
    (tree / "sub" / "README").write_bytes(b"plain text\n")
    (tree / "sub" / "page").write_bytes(b"<!DOCTYPE html><html><body>p</body></html>\n")
    (tree / "www" / "index.html").write_bytes(b"<html><body>i</body></html>\n")
    cg = " ".join(f"'{a}'" for a in carget_cmd())
    lines = []
    for name, path, args in REQUESTS:
        quoted = " ".join('"' + a.replace('"', '\\"').replace("A_CID", "$ACID") + '"'
                          for a in args)
        for who in ("kubo", "carget"):
            out = f"-D '{d}/{name}.{who}.h' -o '{d}/{name}.{who}.b'"
            url = f'"${who.upper()}/ipfs/$ROOT{path[2:]}"'
            lines.append(f"curl -sS --max-time 60 {out} {quoted} {url}")
    script = f"""
"$IPFS" init --profile=test > /dev/null
ROOT=$("$IPFS" add -Q -r --cid-version=1 '{tree}')
ACID=$("$IPFS" add -Q --cid-version=1 '{tree}/a.txt')
echo "$ROOT" > '{d}/root.cid'; echo "$ACID" > '{d}/a.cid'
"$IPFS" daemon --offline > '{d}/daemon.out' 2>&1 &
KP=$!
{cg} serve --listen 127.0.0.1:0 --cid-version=1 '{tree}' > '{d}/serve.out' 2>&1 &
SP=$!
trap 'kill $KP $SP 2>/dev/null || true; wait $KP $SP 2>/dev/null || true' EXIT
for i in $(seq 300); do grep -q 'Daemon is ready' '{d}/daemon.out' && \\
  grep -q 'serving on' '{d}/serve.out' && break; sleep 0.2; done
PORT=$(awk -F/ '/^Gateway server listening on/ {{print $5}}' '{d}/daemon.out')
test -n "$PORT" || {{ cat '{d}/daemon.out'; exit 1; }}
KUBO=http://127.0.0.1:$PORT
CARGET=$(awk '/^serving on/ {{print $3}}' '{d}/serve.out')
{chr(10).join(lines)}
"""
    isolated(script, env={"IPFS": str(ipfs), "IPFS_PATH": str(d / "repo")}, timeout=900)
    return {"dir": d, "a": (d / "a.cid").read_text().strip()}


@pytest.mark.parametrize("name", [r[0] for r in REQUESTS])
def test_same_answer_as_kubo(answers: dict[str, object], name: str) -> None:
    d = answers["dir"]
    assert isinstance(d, Path)
    k_status, k = _parse((d / f"{name}.kubo.h").read_bytes())
    c_status, c = _parse((d / f"{name}.carget.h").read_bytes())
    assert c_status == k_status
    if name.startswith("inm"):
        assert k_status == 304  # the request is what it means to be
    for h in SAME:
        if h == "content-type" and k_status >= 400:
            continue  # error pages: kubo's and carget's texts differ
        if h == "content-length" and (k_status >= 300 or not k.get(h)):
            continue  # their bodies are the gateways' own words
        assert c.get(h) == k.get(h), h
    if k_status in (200, 206) and name != "head":
        assert (d / f"{name}.carget.b").read_bytes() == (d / f"{name}.kubo.b").read_bytes()
