"""A blocking TLS server on 127.0.0.1 for the fetcher's HTTPS tests: a certificate from a
trustme test CA, one thread per connection, each handed the TLS socket and the request
head it sent (read up to the blank line) to answer as the test needs."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import trustme

#: answers one connection: (the TLS socket, the request's bytes up to and past its head)
Handler = Callable[[ssl.SSLSocket, bytes], None]


def _serve_one(conn: socket.socket, ctx: ssl.SSLContext, handle: Handler) -> None:
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            req = b""
            while b"\r\n\r\n" not in req:
                data = tls.recv(65536)
                if not data:
                    return
                req += data
            handle(tls, req)
    except OSError:  # ssl.SSLError included: a client that refused the certificate
        pass


@contextmanager
def tls_server(cert: trustme.LeafCert, handle: Handler) -> Iterator[int]:
    """Serve TLS on a free loopback port (yielded) until the block ends."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    lsock = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=_serve_one, args=(conn, ctx, handle), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield lsock.getsockname()[1]
    finally:
        try:
            lsock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close alone does not
        except OSError:
            pass
        lsock.close()
        t.join(10)
