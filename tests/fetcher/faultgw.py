"""A fault-injecting trustless gateway for tests (trio, HTTP/1.1 on 127.0.0.1).

It answers ``/ipfs/CID[/path]?format=car&dag-scope=…&entity-bytes=…`` from a
:class:`DagStore` the honest way, then breaks the answer as its :class:`Fault` says:

=============== =====================================================================
kind            what the gateway does
=============== =====================================================================
none            honest
flip            flips a bit in block number ``at`` (a hash mismatch)
substitute      sends another valid block of the store in place of block ``at``
cut_mid         closes the connection in the middle of block ``at``
cut_boundary    ends the response cleanly after ``at`` blocks (an incomplete DAG)
drip            sends ``drip_size`` bytes every ``drip_delay`` seconds
stall           sends ``at`` blocks, then nothing, forever
status          answers ``status`` (e.g. 500, or 429 with ``Retry-After``)
ignore_scope    ignores dag-scope and entity-bytes: sends the whole DAG
static          a static server in front of a ready-made CAR (a CDN, object storage,
                nginx): every request gets the root's whole DAG in DFS order, with
                Content-Length and a bare ``application/vnd.ipld.car`` (no order given)
content_type    sends the CAR with a wrong Content-Type
huge_prefix     sends a section length prefix of 2^60
never_end       after the honest body, sends junk blocks forever
repeat          sends ``at`` blocks, then block ``at - 1`` again and again, forever
bad_chunk       a chunked 200 whose first chunk-size line is ``chunk_line`` (e.g. -10)
redirect        answers 302 to ``location`` + the request's path and query
=============== =====================================================================

``keep_alive`` answers without ``Connection: close`` and reads further requests on the
connection after a complete answer (at most ``per_connection`` of them, then it closes
without a word, as servers with an idle timeout do); ``tls`` (a server SSLContext)
speaks HTTPS. ``accepts`` counts connections (TLS handshakes, with ``tls``).

``times`` limits a fault to the first N CAR requests (of dag-scope ``only_scope``).
Every request is logged in ``log`` (path, query, status, body bytes sent), which
tests use to prove what was (re)fetched. ``/routing/v1/providers/{cid}`` answers with ``providers``.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import trio
from dagstore import DagStore, NotHere

from carget.car.encoder import encode_header, section_prefix
from carget.cid import CID, RAW, encode_varint
from loopback import http_answer, one_answer


@dataclass
class Fault:
    kind: str = "none"
    at: int = 1
    status: int = 500
    retry_after: str | None = None
    times: int | None = None
    only_scope: str | None = None  # apply only to requests with this dag-scope
    drip_size: int = 2048
    drip_delay: float = 0.005
    chunk_line: bytes = b"-10"
    location: str = ""


@dataclass
class Logged:
    path: str
    query: dict[str, str]
    status: int = 0
    sent: int = 0
    began: float = 0.0  # trio clock: the request arrived
    ended: float = float("inf")  # the answer was over (inf while it is not)
    chunked: bool = True  # its body is sent in chunks
    complete: bool = False  # the answer was sent whole (the connection may carry more)


def most_at_once(entries: list[Logged]) -> int:
    """The largest number of these requests that were being answered at the same time."""
    edges = sorted([(e.began, 1) for e in entries] + [(e.ended, -1) for e in entries],
                   key=lambda edge: (edge[0], edge[1]))
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


@dataclass
class FaultGateway:
    store: DagStore
    fault: Fault = field(default_factory=Fault)
    chunked: bool = True
    providers: list[dict[str, Any]] = field(default_factory=list)
    log: list[Logged] = field(default_factory=list)
    url: str = ""
    car_requests: int = 0
    keep_alive: bool = False
    per_connection: int = 1 << 30
    tls: ssl.SSLContext | None = None
    accepts: int = 0

    # --- HTTP ---------------------------------------------------------------------------

    def close_header(self) -> list[tuple[str, str]]:
        return [] if self.keep_alive else [("Connection", "close")]

    async def handle(self, tcp: trio.SocketStream) -> None:
        self.accepts += 1
        stream: Any = tcp
        try:
            if self.tls is not None:
                stream = trio.SSLStream(tcp, self.tls, server_side=True)
                await stream.do_handshake()
            buf = b""
            for _ in range(self.per_connection):
                while b"\r\n\r\n" not in buf:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buf += data
                raw, buf = buf.split(b"\r\n\r\n", 1)
                head = raw.decode("latin-1").split("\r\n")
                _method, target, _ = head[0].split(" ", 2)
                headers = {}
                for line in head[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                parts = urlsplit(target)
                entry = Logged(parts.path, dict(parse_qsl(parts.query)),
                               began=trio.current_time())
                self.log.append(entry)
                try:
                    await self.respond(stream, entry, headers)
                finally:
                    entry.ended = trio.current_time()
                if not (self.keep_alive and entry.complete) or \
                        headers.get("connection", "").lower() == "close":
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def send_head(self, stream: trio.SocketStream, entry: Logged, status: int,
                        headers: list[tuple[str, str]]) -> None:
        entry.status = status
        lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers]
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def send_body_piece(self, stream: trio.SocketStream, entry: Logged,
                              piece: bytes) -> None:
        if not piece:
            return
        entry.sent += len(piece)
        if entry.chunked:
            await stream.send_all(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        else:
            await stream.send_all(piece)

    async def simple(self, stream: trio.SocketStream, entry: Logged, status: int,
                     body: bytes, ctype: str = "text/plain",
                     extra: list[tuple[str, str]] | None = None) -> None:
        await self.send_head(stream, entry, status, [("Content-Type", ctype),
                                                     ("Content-Length", str(len(body))),
                                                     *self.close_header(),
                                                     *(extra or [])])
        entry.sent += len(body)
        await stream.send_all(body)
        entry.complete = True

    # --- gateway ------------------------------------------------------------------------

    async def respond(self, stream: trio.SocketStream, entry: Logged,
                      headers: dict[str, str]) -> None:
        path = entry.path
        if path.startswith("/routing/v1/providers/"):
            body = json.dumps({"Providers": self.providers}).encode()
            await self.simple(stream, entry, 200, body, "application/json")
            return
        if not path.startswith("/ipfs/"):
            await self.simple(stream, entry, 404, b"no")
            return
        segs = [unquote(s) for s in path[len("/ipfs/"):].split("/") if s]
        q = entry.query
        fault = self.fault
        q_scope = entry.query.get("dag-scope", "all")
        if fault.only_scope is None or fault.only_scope == q_scope:
            self.car_requests += 1
            active = fault.times is None or self.car_requests <= fault.times
        else:
            active = False
        kind = fault.kind if active else "none"
        if kind == "status":
            extra = [("Retry-After", fault.retry_after)] if fault.retry_after else []
            await self.simple(stream, entry, fault.status, b"busy", extra=extra)
            return
        if kind == "redirect":
            query = "&".join(f"{k}={v}" for k, v in q.items())
            await self.simple(stream, entry, 302, b"moved", extra=[
                ("Location", fault.location + path + (f"?{query}" if query else ""))])
            return
        scope = q.get("dag-scope", "all")
        rng = None
        if "entity-bytes" in q:
            a, _, b = q["entity-bytes"].partition(":")
            rng = (int(a), None if b == "*" else int(b))
        dups = "dups=y" in headers.get("accept", "")
        try:
            root = CID.parse(segs[0])
            if kind == "ignore_scope":
                blocks = self.store.select(root, [], "all", None, dups)
            elif kind == "static":
                blocks = self.store.select(root, [], "all", None, True)
            else:
                blocks = self.store.select(root, segs[1:], scope, rng, dups)
        except (NotHere, KeyError):
            await self.simple(stream, entry, 404, b"not found")
            return
        sections = [section_prefix(b.cid, len(b.data)) + bytes(b.data) for b in blocks]
        at = min(fault.at, max(0, len(sections) - 1))
        if kind == "flip" and sections:
            s = bytearray(sections[at])
            s[-1] ^= 0x01
            sections[at] = bytes(s)
        elif kind == "substitute" and sections:
            others = [c for c in self.store.blocks if c not in {b.cid for b in blocks}]
            sub = others[0] if others else blocks[(at + 1) % len(blocks)].cid
            data = self.store.blocks[sub]
            sections[at] = section_prefix(sub, len(data)) + data
        ctype = "application/vnd.ipld.car; version=1; order=dfs; dups=" + ("y" if dups else "n")
        if kind == "content_type":
            ctype = "application/octet-stream"
        elif kind == "static":
            ctype = "application/vnd.ipld.car"
        hdrs = [("Content-Type", ctype), *self.close_header()]
        header = encode_header([root])
        if kind == "huge_prefix":
            body = header + encode_varint(1 << 60) + b"\x01\x55" + os.urandom(64)
            await self.simple(stream, entry, 200, body, ctype)
            return
        chunked = self.chunked and kind != "static"
        if not chunked:
            total = len(header) + sum(len(s) for s in sections)
            hdrs.append(("Content-Length", str(total)))
        else:
            hdrs.append(("Transfer-Encoding", "chunked"))
        await self.send_head(stream, entry, 200, hdrs)
        if kind == "bad_chunk":
            await stream.send_all(fault.chunk_line + b"\r\n" + header + b"\r\n")
            entry.sent += len(header)
            await trio.sleep_forever()
        entry.chunked = chunked
        send = partial(self.send_body_piece, stream, entry)
        await send(header)
        for i, sec in enumerate(sections):
            if kind == "repeat" and i == at:
                while True:
                    await send(sections[at - 1])
                    await trio.sleep(0)
            if kind == "cut_mid" and i == at:
                await send(sec[: len(sec) // 2])
                return  # connection closes mid-block (no terminating chunk)
            if kind == "cut_boundary" and i == at:
                break
            if kind == "stall" and i == at:
                await trio.sleep_forever()
            if kind == "drip":
                for j in range(0, len(sec), fault.drip_size):
                    await send(sec[j:j + fault.drip_size])
                    await trio.sleep(fault.drip_delay)
            else:
                await send(sec)
        if kind == "never_end":
            while True:
                junk = os.urandom(1024)
                await send(section_prefix(CID.of(junk, RAW), len(junk)) + junk)
                await trio.sleep(0)
        if chunked:
            await stream.send_all(b"0\r\n\r\n")
        entry.complete = True


@asynccontextmanager
async def fault_gateway(store: DagStore, fault: Fault | None = None, *, chunked: bool = True,
                        providers: list[dict[str, Any]] | None = None,
                        keep_alive: bool = False, per_connection: int = 1 << 30,
                        tls: ssl.SSLContext | None = None) -> AsyncIterator[FaultGateway]:
    gw = FaultGateway(store, fault or Fault(), chunked, providers or [],
                      keep_alive=keep_alive, per_connection=per_connection, tls=tls)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, gw.handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        gw.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        try:
            yield gw
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def plain_server(content: bytes) -> AsyncIterator[str]:
    """A plain HTTP mirror serving ``content`` at any path (the --fallback-url)."""
    answer = http_answer("200 OK", {"Content-Type": "application/octet-stream"}, content)
    async with one_answer(answer) as url:
        yield f"{url}/file.bin"
