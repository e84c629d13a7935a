"""``carget serve``: a trustless gateway over files, directories and CARs."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import sys
from collections.abc import Callable
from functools import partial
from typing import IO, TYPE_CHECKING, Any

import click

from ..errors import InputError, UsageError

if TYPE_CHECKING:
    from ..server.cache import DiskCache
    from ..server.store import BlockStore
    from ..server.upstream import Upstream
from ._importflags import import_flags, pop_import_options
from ._signals import INTERRUPT_SIGNALS
from .add import ValueWordsCommand, printable_name

#: kubo's gateway listens on 8080 by default; so does this one
DEFAULT_LISTEN = "127.0.0.1:8080"


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (loopback). Raises :class:`UsageError`."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen {text!r} is not HOST:PORT")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command(cls=ValueWordsCommand)
@click.argument("paths", nargs=-1, type=click.Path(exists=False))
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="HOST:PORT",
              help="Address to listen on (port 0 picks a free port).")
@click.option("--public", is_flag=True,
              help="Allow a non-loopback --listen address. The gateway has no authentication:"
                   " anyone who can reach the address can read everything it serves, so only"
                   " use this on a network you trust (e.g. a LAN mirror).")
@click.option("--upstream", "upstreams", multiple=True, metavar="URL",
              help="A trustless gateway to fetch content not held here from (repeatable; "
                   "only those named are used). Every block is verified and kept in the "
                   "cache.")
@click.option("--cache-dir", default=None, metavar="DIR",
              help="Also serve verified blocks kept in DIR (default with an upstream: "
                   "$XDG_CACHE_HOME/carget, else ~/.cache/carget); blocks go in pack "
                   "files under DIR/packs.")
@click.option("--cache-size", default="10GiB", show_default=True, metavar="SIZE",
              help="Most bytes of blocks the cache keeps (512MiB, 10GiB...); the least "
                   "recently used packs of blocks go first.")
@click.option("-v", "--verbose", is_flag=True,
              help="Log each request (method, path, status, bytes, seconds) to stderr.")
@click.option("--log", "log_file", default=None, metavar="FILE",
              help="Append the access log to FILE instead.")
@import_flags
def serve(paths: tuple[str, ...], listen: str, public: bool, upstreams: tuple[str, ...],
          cache_dir: str | None,
          cache_size: str, verbose: bool, log_file: str | None, **flags: Any) -> None:
    """Serve PATHS as an IPFS gateway: GET/HEAD /ipfs/CID[/path] gives the content itself
    (files, directory listings, index.html) as kubo's gateway does, and trustless answers
    (?format=raw|car, or the trustless Accept types).

    Files and directories are imported as `carget add -r` would (same flags, same `added`
    lines) without copying them: blocks are read from the files when served, and a file that
    changed since is detected and refused. Paths ending in .car are served as CAR files
    (v1 or v2), indexed without loading them into memory.
    """
    from ..server.cache import DiskCache, default_cache_dir, parse_size
    from ..server.store import BlockStore
    from ..server.upstream import Upstream

    if not paths and not upstreams:
        raise UsageError("nothing to serve: give PATHS, --upstream URL, or both")
    for url in upstreams:
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"--upstream {url!r} is not an http:// or https:// URL")

    host, port = parse_listen(listen)
    if not is_loopback(host) and not public:
        raise UsageError(f"refusing to listen on {host}: it is not a loopback address; "
                         "add --public to serve the network (no authentication)")
    opts, jobs = pop_import_options(flags)
    if "-" in paths:
        raise UsageError("stdin (-) cannot be served: blocks are read back from the files "
                         "they came from; save it to a file first")
    for p in paths:
        if not os.path.lexists(p):
            raise InputError(f"{p}: no such file or directory")
    max_bytes = parse_size(cache_size)
    check_listen(host, port)  # before importing: a busy port should not cost an import
    log = _open_log(log_file, verbose)
    out = sys.stdout

    def changed(path: str) -> None:
        if log is not None:
            log(f"{path} changed since it was indexed: its blocks are re-hashed and "
                "refused when they no longer match")

    store = BlockStore(on_changed=changed)
    files: list[str] = []
    for p in paths:
        if p.endswith(".car") and os.path.isfile(p):
            for root in store.add_car(p):
                out.write(f"added {root} {os.path.basename(p)}\n")
        else:
            files.append(p)
    if files:
        def report(cid: str, name: str, digest: str | None) -> None:
            out.write(f"added {cid} {printable_name(name)}\n")

        store.add_paths(files, opts, jobs=jobs, report=report)
    out.flush()
    if upstreams and cache_dir is None:
        cache_dir = default_cache_dir()
    cache = DiskCache(cache_dir, max_bytes) if cache_dir is not None else None
    upstream = None
    if cache is not None and upstreams:
        upstream = Upstream([u.rstrip("/") for u in upstreams], cache, log=log,
                            verbose=verbose)
        cache.filler = upstream
    _run(store, host, port, cache, upstream, log)


def _open_log(path: str | None, verbose: bool) -> Callable[[str], None] | None:
    """The access log's sink: FILE (appended, a line at a time), else stderr with -v."""
    sink: IO[str]
    if path is not None:
        try:
            sink = open(path, "a", buffering=1, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot open log {path}: {exc.strerror or exc}") from None
    elif verbose:
        sink = sys.stderr
    else:
        return None

    def write(line: str) -> None:
        try:
            sink.write(line + "\n")
            sink.flush()
        except OSError:
            pass

    return write


def _cannot_listen(host: str, port: int, exc: OSError) -> InputError:
    hint = ""
    if exc.errno == errno.EADDRINUSE:
        hint = f" (something else listens there; --listen {host}:0 picks a free port)"
    shown = f"[{host}]" if ":" in host else host
    return InputError(f"cannot listen on {shown}:{port}: {exc.strerror or exc}{hint}")


def check_listen(host: str, port: int) -> None:
    """Bind ``host:port`` once and let it go, so a busy or forbidden address is one line
    (exit 1) before any work. Raises :class:`InputError`."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise _cannot_listen(host, port, exc) from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            probe.bind(addr)
            probe.listen(1)
        except OSError as exc:
            raise _cannot_listen(host, port, exc) from None


def _run(store: BlockStore, host: str, port: int, cache: DiskCache | None,
         upstream: Upstream | None, log: Callable[[str], None] | None) -> None:
    import trio

    from ..server import serve as serve_store
    from ..server.blocks import Layers

    async def main() -> None:
        # Ctrl-C, SIGTERM (service managers, kill) and SIGHUP all stop it cleanly: caught
        # here rather than as KeyboardInterrupt, which trio would wrap in an exception
        # group; the receiver is open before "serving on" is printed, so a caller that
        # signals as soon as it reads that line is answered too
        with trio.open_signal_receiver(*INTERRUPT_SIGNALS) as signals:
            async with trio.open_nursery() as nursery:
                if upstream is not None:
                    await nursery.start(upstream.run)
                served = Layers([store, cache]) if cache is not None else store
                waiter = cache if cache is not None and cache.filler is not None else None
                bound = await nursery.start(partial(serve_store, served, host, port,
                                                    waiter=waiter, log=log))
                shown = f"[{host}]" if ":" in host else host
                click.echo(f"serving on http://{shown}:{bound}")
                sys.stdout.flush()
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    try:
        try:
            trio.run(main)
        except BaseExceptionGroup as eg:  # the listener's error, inside trio's group
            from ..fetcher.run import leaf_error

            raise leaf_error(eg) from None
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise _cannot_listen(host, port, exc) from None
    click.echo("stopped", err=True)
