"""``carget get`` fetching a 512 MiB file from loopback ``carget serve`` gateways, against
hashlib's SHA-256 of the same bytes (same run), with the client stack taken apart to show
where the bytes spend their time.

Steps, all on 127.0.0.1, every client a separate process (so its peak RSS is its own and
no gateway shares its GIL):

1. make a file of random bytes (page-cached) and time hashlib SHA-256 over it: the
   baseline every figure is divided by;
2. serve it (CIDv1, 256 KiB raw leaves) from one or two ``carget serve`` processes;
3. read the CAR body only (no verification): with httpx on trio (``aiter_raw``), and with
   carget's lean HTTP/1.1 reader (``carget.fetcher.http``: 1 MiB ``receive_some``);
4. ``carget get`` with one gateway and with two, with one and with two connections
   each, verifying every block on worker threads and writing the file (whole process,
   so ~0.11 s of interpreter start-up and imports included, ~60 ms of it trio's);
5. the same fetch timed inside the process ("fetch only": the stream measure that
   ../shared/DESIGN.md's client-stack figures use, and what a long-running caller such
   as lima's library use sees).

Each figure is the median over ``--rounds`` rounds, each of which runs every client
against every kind of gateway (all started at once), so drift on the host hits them
alike, with the range beside it; the baseline is hashlib's best of three. On this
2-core box the gateway shares the cores: once two streams verify at once (two
connections, or two gateways) both cores are busy, so more streams cannot go faster
here, only over a real network.

Four kinds of gateway (``--gateways``): a minimal sendfile gateway that honours
dag-scope and entity-bytes (so the server does not eat the CPU the client needs on a
2-core box); a static server in front of the same ready-made CAR (DFS order), which
answers every request with the whole CAR (a CDN, object storage, nginx); the sendfile
gateway over HTTPS (a trustme test CA, trusted by the clients through SSL_CERT_FILE; the
server encrypts with the ssl module on the same cores); and ``carget serve``. Each also
shows curl's time for the same CAR, and the sendfile kinds the most CAR bytes the server
sent for one ``get`` (its ``/stats``), as a multiple of the CAR's size. Every line gives
the client process's CPU seconds too: what HTTPS costs the client itself, apart from the
gateway's share of the same two cores.

The HTTPS server's encryption is not cheaper elsewhere: nginx (Debian's nginx-light,
one worker, TLS 1.3, AES-256-GCM) spent the same CPU per 512 MiB served (~0.45 s) as
this server's ``sendall`` of 1 MiB pieces, and curl read both at the same speed; kernel
TLS (sendfile of an encrypted socket) needs the kernel's ``tls`` module and Python
3.12's ``ssl.OP_ENABLE_KTLS``, which this machine lacks. So over HTTPS on loopback the
gateway takes ~0.45 s of the two cores for every 512 MiB, where the sendfile gateway
takes ~0.2 s.

    python benchmarks/bench_fetch.py [--mib 512] [--rounds 5] [--gateways static,tls] [--quick]

Peak RSS is the client process's (``wait4``); ``--mib 1024`` checks the 100 MiB budget.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Run, ensure_bytecode, hashlib_baseline, make_file, report, run_process, warm

#: a gateway process; argv: FILE. Prints "<root> <port>" once serving.
SERVER = """
import sys, trio
from functools import partial
from carget.server.store import BlockStore
from carget.server import serve
from carget.unixfs.options import resolve_options
store = BlockStore()
root = store.add_paths([sys.argv[1]], resolve_options(cid_version=1))[0]
async def main():
    async with trio.open_nursery() as n:
        port = await n.start(partial(serve, store, "127.0.0.1", 0))
        print(root, port, flush=True)
trio.run(main)
"""

#: a minimal trustless gateway that answers from a CAR file with os.sendfile, so the
#: server is not what limits the client on a 2-core box: it knows just enough (a 1- or
#: 2-level balanced file DAG, dag-scope=block/entity, entity-bytes) for these requests.
#: argv: CAR [--whole] [--tls CERT KEY]. ``--whole`` makes it a static server in front of
#: a ready-made CAR (a CDN, object storage, nginx): every request gets the whole CAR,
#: whatever its dag-scope and entity-bytes. ``--tls`` serves HTTPS (the body encrypted
#: by the ssl module in 1 MiB sendall calls, as no sendfile is possible). ``/stats``
#: answers the body bytes sent so far. Prints "<root> <port>" once serving.
SENDFILE_SERVER = r"""
import mmap, os, socket, socketserver, ssl, sys, threading
from urllib.parse import urlsplit, parse_qsl
from carget.car.encoder import encode_header
from carget.cid import CID, decode_varint, read_cid
from carget.unixfs.node import decode_unixfs
path = sys.argv[1]
whole = "--whole" in sys.argv
tls = None
if "--tls" in sys.argv:
    i = sys.argv.index("--tls")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(sys.argv[i + 1], sys.argv[i + 2])
fd = os.open(path, os.O_RDONLY)
size = os.fstat(fd).st_size
mm = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
data = mm
hlen, pos = decode_varint(data, 0)
pos += hlen
where = {}
while pos < len(data):
    n, p = decode_varint(data, pos)
    cid, end = read_cid(data, p)
    where[cid] = (pos, p + n - pos, end, p + n)
    pos = p + n
import dag_cbor
hdr = dag_cbor.decode(data[decode_varint(data, 0)[1]:decode_varint(data, 0)[1] + hlen])
root = CID.from_bytes(bytes(hdr["roots"][0]))
def block(c):
    off, ln, d0, d1 = where[c]
    return data[d0:d1]
rnode = decode_unixfs(root, block(root))
kids = []
for link, a, b in rnode.file_children():
    leaves = []
    if link.cid.codec == 0x70:
        n = decode_unixfs(link.cid, block(link.cid))
        leaves = [(l.cid, a + x, a + y) for l, x, y in n.file_children()]
    kids.append((link.cid, a, b, leaves))
HEAD = encode_header([root])
sent = 0
lock = threading.Lock()
def spans(lo, hi):
    out = [where[root][:2]]
    for c, a, b, leaves in kids:
        if b <= lo or a > hi:
            continue
        out.append(where[c][:2])
        sel = [where[l][:2] for l, x, y in leaves if not (y <= lo or x > hi)]
        if sel:
            start = sel[0][0]
            end = sel[-1][0] + sel[-1][1]
            out.append((start, end - start))
    return out
class H(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        try:
            if tls is not None:
                s = tls.wrap_socket(s, server_side=True)
            self.answer(s)
        except (OSError, ValueError):
            pass  # the client stopped early: it had what it needed (a narrowed range)
    def answer(self, s):
        global sent
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                return
            buf += d
        target = buf.split(b" ", 2)[1].decode()
        if target == "/stats":
            body = str(sent).encode()
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            return
        q = dict(parse_qsl(urlsplit(target).query))
        if whole:
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ipld.car\r\n"
                      b"Connection: close\r\nContent-Length: %d\r\n\r\n" % size)
            self.send(s, 0, size)
            return
        if q.get("dag-scope") == "block":
            sp = [where[root][:2]]
        else:
            lo, _, hi = q.get("entity-bytes", "0:*").partition(":")
            sp = spans(int(lo), 1 << 62 if hi in ("", "*") else int(hi))
        total = len(HEAD) + sum(n for _, n in sp)
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ipld.car; version=1; "
                  b"order=dfs; dups=y\r\nConnection: close\r\nContent-Length: "
                  + str(total).encode() + b"\r\n\r\n" + HEAD)
        with lock:
            sent += len(HEAD)
        for off, n in sp:
            self.send(s, off, n)
    def send(self, s, off, n):
        global sent
        while n:
            if tls is None:
                k = os.sendfile(s.fileno(), fd, off, n)
            else:
                k = min(n, 1 << 20)
                s.sendall(memoryview(mm)[off:off + k])
            off += k
            n -= k
            with lock:
                sent += k
class S(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
srv = S(("127.0.0.1", 0), H)
print(root, srv.server_address[1], flush=True)
srv.serve_forever()
"""

#: carget.fetcher in-process, timing only the fetch (no interpreter start-up, which
#: the whole-process figures include); argv: ROOT OUT STREAMS URL...
IN_PROCESS = """
import sys, time, trio
from carget.fetcher import FetchOptions
from carget.fetcher.get import run_get
root, out, streams, urls = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
t = time.perf_counter()
trio.run(run_get, root, out, FetchOptions(urls, streams_per_gateway=streams))
print(time.perf_counter() - t)
"""

#: body only, httpx on trio; argv: URL
HTTPX_BODY = """
import sys, trio, httpx
async def main():
    n = 0
    async with httpx.AsyncClient(timeout=60) as c:
        async with c.stream("GET", sys.argv[1],
                            headers={"Accept": "application/vnd.ipld.car"}) as r:
            async for piece in r.aiter_raw(1 << 20):
                n += len(piece)
    print(n)
trio.run(main)
"""

#: body only, carget's lean reader; argv: URL
LEAN_BODY = """
import sys, trio
from carget.fetcher.http import open_http
async def main():
    n = 0
    async with open_http(sys.argv[1], headers={"Accept": "application/vnd.ipld.car"}) as r:
        while (p := await r.receive()) is not None:
            n += len(p)
    print(n)
trio.run(main)
"""


def start_gateway(argv: list[str], script: str = SERVER, scheme: str = "http"
                  ) -> tuple[subprocess.Popen[bytes], str, str]:
    proc = subprocess.Popen([sys.executable, "-c", script, *argv], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    root, port = proc.stdout.readline().decode().split()
    host = "localhost" if scheme == "https" else "127.0.0.1"
    return proc, root, f"{scheme}://{host}:{port}"


def server_sent(url: str) -> int:
    """Body bytes a sendfile gateway sent so far (its ``/stats``)."""
    import ssl
    import urllib.request

    ctx = ssl.create_default_context()  # SSL_CERT_FILE names the test CA
    with urllib.request.urlopen(url + "/stats", context=ctx, timeout=30) as r:
        return int(r.read())


#: the gateways measured, by --gateways name: (label, script, scheme, extra argv)
GATEWAYS = {
    "sendfile": ("sendfile gateway (honours dag-scope, entity-bytes)", SENDFILE_SERVER,
                 "http", []),
    "static": ("static CAR server (ignores the query: whole CAR)", SENDFILE_SERVER, "http",
               ["--whole"]),
    "tls": ("sendfile gateway over HTTPS (test CA)", SENDFILE_SERVER, "https", ["--tls"]),
    "serve": ("carget serve", SERVER, "http", []),
}


def main() -> None:
    ensure_bytecode()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--gateways", default=",".join(GATEWAYS),
                    help="which gateways, comma-separated: " + ", ".join(GATEWAYS))
    ap.add_argument("--quick", action="store_true",
                    help="only carget get with 1 and 2 connections to one gateway, and curl")
    args = ap.parse_args()
    size = args.mib << 20
    with tempfile.TemporaryDirectory(prefix="carget-bench-fetch-") as tmp:
        src = os.path.join(tmp, "src.bin")
        make_file(src, size)
        warm(src)
        base_run = hashlib_baseline(src)
        base = size / base_run.seconds / 1e6
        print(f"{'hashlib sha256 (process, 1 MiB reads, best of 3)':<52} {base:7.0f} MB/s  1.00x",
              flush=True)
        made = os.path.join(tmp, "made.car")
        subprocess.run([sys.executable, "-m", "carget", "add", "--cid-version", "1", "-Q",
                        "--car", made, src], check=True, stdout=subprocess.DEVNULL)
        # the ready-made CAR a static server holds is in DFS order, as gateways send and
        # `ipfs dag export` writes (add --car writes leaves before their parents)
        car = os.path.join(tmp, "src.car")
        proc, root, url = start_gateway([made], SENDFILE_SERVER)
        try:
            import urllib.request

            with urllib.request.urlopen(f"{url}/ipfs/{root}?format=car&dag-scope=entity",
                                        timeout=60) as r, open(car, "wb") as f:
                while piece := r.read(1 << 20):
                    f.write(piece)
        finally:
            proc.terminate()
            proc.wait()
        os.unlink(made)
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        ca_pem, cert_pem, key_pem = (os.path.join(tmp, n) for n in ("ca.pem", "c.pem", "k.pem"))
        ca.cert_pem.write_to_path(ca_pem)
        cert.cert_chain_pems[0].write_to_path(cert_pem)
        cert.private_key_pem.write_to_path(key_pem)
        os.environ["SSL_CERT_FILE"] = ca_pem  # the clients trust the test CA
        kinds = []
        for name in args.gateways.split(","):
            label, script, scheme, extra = GATEWAYS[name]
            if extra == ["--tls"]:
                extra = ["--tls", cert_pem, key_pem]
            argv = [src] if script is SERVER else [car, *extra]
            kinds.append(Kind(name, label, script, argv, scheme))
        summary(measure(args, size, base, tmp, kinds, os.path.getsize(car)))


def summary(results: dict[str, dict[str, float]]) -> None:
    """The issue's figures in one place: whole ``carget get`` (default flags) from each
    gateway, curl of the same CAR beside it, and HTTPS against plain HTTP."""
    print("-- summary: whole carget get, default flags (1 gateway) / curl of the same CAR",
          flush=True)
    default = "1 gateway, 2 connections (default)"
    for name, got in results.items():
        if default in got:
            curl_ratio = f"{got['curl']:.2f}x" if "curl" in got else "-"
            print(f"{GATEWAYS[name][0]:<52} {got[default]:5.2f}x / curl {curl_ratio}",
                  flush=True)
    if "tls" in results and "sendfile" in results:
        for case in ("1 gateway, 1 connection", default):
            print(f"HTTPS / plain HTTP, {case:<36} "
                  f"{results['tls'][case] / results['sendfile'][case]:5.2f}", flush=True)


def curl(url: str) -> Run | None:
    import shutil

    if shutil.which("curl") is None:
        return None
    tls = ["--cacert", os.environ["SSL_CERT_FILE"]] if url.startswith("https:") else []
    return run_process(["curl", "-sS", "-o", "/dev/null", *tls, "-H",
                        "Accept: application/vnd.ipld.car", url])


@dataclass
class Kind:
    """One kind of gateway to measure, and (once started) its two processes."""

    name: str
    label: str
    script: str
    argv: list[str]
    scheme: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    root: str = ""
    urls: list[str] = field(default_factory=list)


#: the cases, by name: (gateways used, connections each)
CASES = (("1 gateway, 1 connection", 1, "1"),
         ("1 gateway, 2 connections (default)", 1, "2"),
         ("2 gateways, 1 connection each", 2, "1"),
         ("2 gateways, 2 connections each (default)", 2, "2"))


def measure(args: argparse.Namespace, size: int, base: float, tmp: str, kinds: list[Kind],
            car_bytes: int) -> dict[str, dict[str, float]]:
    """Start two gateways of each kind at once, measure them in alternating rounds (each
    round runs every client against every kind, so drift on the host hits them alike),
    then report each kind; return the median ratios by kind and case ("curl" and each
    ``carget get`` case)."""
    try:
        for k in kinds:
            for _ in range(2):
                proc, k.root, url = start_gateway(k.argv, k.script, k.scheme)
                k.procs.append(proc)
                k.urls.append(url)
        return measure_started(args, size, base, tmp, kinds, car_bytes)
    finally:
        for k in kinds:
            for p in k.procs:
                p.terminate()
                p.wait()


def measure_started(args: argparse.Namespace, size: int, base: float, tmp: str,
                    kinds: list[Kind], car_bytes: int) -> dict[str, dict[str, float]]:
    cases = CASES[:2] if args.quick else CASES
    bodies = (("body only: httpx on trio (aiter_raw)", HTTPX_BODY),
              ("body only: carget lean HTTP/1.1 reader", LEAN_BODY))
    runs: dict[tuple[str, str], list[Run]] = defaultdict(list)
    sent: dict[tuple[str, str], float] = defaultdict(float)
    out = os.path.join(tmp, "out.bin")
    for _ in range(args.rounds):
        for k in kinds:
            car_url = f"{k.urls[0]}/ipfs/{k.root}?format=car&dag-scope=entity"
            counts = k.script is SENDFILE_SERVER
            for name, body in bodies if not args.quick else ():
                runs[k.name, name].append(run_process([sys.executable, "-c", body, car_url]))
            r = curl(car_url)
            if r is not None:
                runs[k.name, "curl"].append(r)
            for name, n, streams in cases:
                urls = k.urls[:n]
                if os.path.exists(out):
                    os.unlink(out)
                argv = [sys.executable, "-m", "carget", "get", k.root, "-o", out,
                        "--progress=false", "-q", "--streams", streams]
                for u in urls:
                    argv += ["-g", u]
                before = sum(server_sent(u) for u in k.urls) if counts else 0
                runs[k.name, name].append(run_process(argv))
                if counts:
                    after = sum(server_sent(u) for u in k.urls)
                    sent[k.name, name] = max(sent[k.name, name], (after - before) / car_bytes)
                assert os.path.getsize(out) == size
                if args.quick:
                    continue
                os.unlink(out)
                r = run_process([sys.executable, "-c", IN_PROCESS, k.root, out, streams, *urls])
                r.seconds = float(r.stdout)
                runs[k.name, "fetch only, " + name].append(r)
                assert os.path.getsize(out) == size
    results: dict[str, dict[str, float]] = {}
    for k in kinds:
        print(f"-- gateways: {k.label}", flush=True)
        got = results[k.name] = {}
        for name, _ in bodies if not args.quick else ():
            report(name, size, runs[k.name, name], base)
        if runs[k.name, "curl"]:
            got["curl"] = report("curl of the CAR (entity), no verification", size,
                                 runs[k.name, "curl"], base)
        for name, _, _ in cases:
            extra = (f"  server sent <= {sent[k.name, name]:.2f}x the CAR"
                     if k.script is SENDFILE_SERVER else "")
            got[name] = report("carget get, " + name, size, runs[k.name, name], base, extra)
        for name, _, _ in cases if not args.quick else ():
            report("fetch only, " + name, size, runs[k.name, "fetch only, " + name], base,
                   cpu=False)
    return results


if __name__ == "__main__":
    main()
