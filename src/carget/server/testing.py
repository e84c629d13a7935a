"""A real gateway for other areas' tests: ``running_gateway`` runs ``carget serve`` on
127.0.0.1 with an ephemeral port, on a background thread with its own ``trio.run``.

>>> with running_gateway(["fixtures/dir.car", "some/file.bin"], cid_version=1) as url:
...     httpx.get(f"{url}/ipfs/{cid}?format=raw")

Paths ending in ``.car`` are indexed as CARs; anything else is imported like ``carget add``
with ``import_opts`` (the keyword arguments of :func:`carget.unixfs.options.resolve_options`).
A ready store (a :class:`~carget.server.store.BlockStore`, or layers of sources) may be
passed instead of paths.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from . import serve
from ._http import ServedStore, ServerLimits
from .blocks import Waiter
from .store import BlockStore

__all__ = ["ServeProcess", "build_store", "running_gateway", "serve_process"]

#: how long starting (import + bind) may take before the helper gives up
START_TIMEOUT = 60.0


def build_store(paths: Sequence[str | os.PathLike[str]], **import_opts: Any) -> BlockStore:
    """A store over ``paths``: ``.car`` files indexed, others imported with ``import_opts``."""
    from ..unixfs.options import resolve_options

    store = BlockStore()
    files: list[str] = []
    for p in (os.fspath(x) for x in paths):
        if p.endswith(".car") and os.path.isfile(p):
            store.add_car(p)
        else:
            files.append(p)
    if files:
        store.add_paths(files, resolve_options(**import_opts), jobs=1)
    return store


@contextmanager
def running_gateway(paths_or_store: ServedStore | Sequence[str | os.PathLike[str]],
                    *, limits: ServerLimits | None = None, waiter: Waiter | None = None,
                    log: Callable[[str], None] | None = None,
                    **import_opts: Any) -> Iterator[str]:
    """Yield the base URL (``http://127.0.0.1:PORT``) of a gateway serving the content
    (``waiter`` and ``log`` as :func:`carget.server.serve` takes them); stop it on exit.
    Raises what the import or the bind raised, in the calling thread."""
    store: ServedStore = (build_store(paths_or_store, **import_opts)
                          if isinstance(paths_or_store, Sequence)
                          else paths_or_store)
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            box["cancel"] = nursery.cancel_scope
            box["token"] = trio.lowlevel.current_trio_token()
            box["port"] = await nursery.start(partial(serve, store, "127.0.0.1", 0, limits=limits,
                                                        waiter=waiter, log=log))
            ready.set()

    def thread() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # reported to the caller below
            box["error"] = exc
        finally:
            ready.set()

    t = threading.Thread(target=thread, name="carget-test-gateway", daemon=True)
    t.start()
    if not ready.wait(START_TIMEOUT):
        raise RuntimeError("test gateway did not start")
    if "error" in box:
        raise box["error"]
    try:
        yield f"http://127.0.0.1:{box['port']}"
    finally:
        try:
            box["token"].run_sync_soon(box["cancel"].cancel)
        except trio.RunFinishedError:
            pass
        t.join(10)


@dataclass
class ServeProcess:
    """A running ``carget serve`` process: its base URL, and the CIDs its ``added`` lines
    gave, by the name printed (a file's or a folder's, as ``carget add`` prints them)."""

    proc: subprocess.Popen[str]
    url: str
    added: dict[str, str] = field(default_factory=dict)

    @property
    def root(self) -> str:
        """The CID added last: the root of the last path given (printed after its
        contents, as ``carget add`` does)."""
        return list(self.added.values())[-1]


@contextmanager
def serve_process(args: Sequence[str], *, env: dict[str, str] | None = None,
                  nofile: int | None = None) -> Iterator[ServeProcess]:
    """``carget serve --listen 127.0.0.1:0 ARGS`` as a process, yielded once it prints
    ``serving on URL`` (stdout and stderr are pipes: read stderr for its log); terminated
    on exit. ``nofile`` sets its RLIMIT_NOFILE through ``prlimit`` (no ``preexec_fn``:
    callers may have threads). Raises RuntimeError with its stderr when it ends without
    serving."""
    cmd = [sys.executable, "-m", "carget", "serve", "--listen", "127.0.0.1:0", *args]
    if nofile is not None:
        cmd = ["prlimit", f"--nofile={nofile}:{nofile}", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        assert proc.stdout is not None
        added: dict[str, str] = {}
        for line in proc.stdout:
            if line.startswith("added "):
                _, cid, name = line.rstrip("\n").split(" ", 2)
                added[name] = cid
            elif line.startswith("serving on "):
                yield ServeProcess(proc, line.split()[-1], added)
                return
        err = proc.stderr.read() if proc.stderr is not None else ""
        raise RuntimeError(f"carget serve ended without serving: {err}")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
