"""Verified fetching of IPFS content from trustless HTTP gateways.

The library face that ``carget get`` / ``carget cat`` and lima use::

    from carget.fetcher import fetch_file_sync
    result = fetch_file_sync("ipfs://bafy.../ubuntu.img", "ubuntu.img",
                             gateways=["http://127.0.0.1:8080"], digest="sha256:ab12...")
    print(result.cid, result.size, result.digest, result.source)

``fetch_file`` is the same as a trio coroutine. Both raise carget's own errors
(:mod:`carget.errors`): :class:`~carget.errors.NotFoundError` when no gateway has the
content, :class:`~carget.errors.VerificationError` when every answer lied or was incomplete,
:class:`~carget.errors.DigestMismatch`, :class:`~carget.errors.NetworkError` /
:class:`~carget.errors.FetchTimeout`, :class:`~carget.errors.UsageError` for a bad target.
Nothing is left at ``out_path`` unless it is complete and verified.

``fetch_blocks(root, path, sink, FetchOptions(gateways=[...]), byte_range=(lo, hi))``
fetches the same way but hands every verified block to ``sink`` instead of writing a
file (a caching gateway's upstream fetch).

Words, each with one meaning here: a **gateway** is a trustless HTTP gateway; a
**connection** is one TCP or TLS connection to it; a **request** is one CAR request and
its **answer**, received, verified and written on three threads; a **worker** is a task
that makes requests one after another, and ``--streams`` (``streams_per_gateway``) is how
many workers, each with its own connection, a gateway gets; a **unit** is a byte range of
a file that one request fetches.

Modules, from the caller inwards:

* ``types`` — what callers hold: :class:`FetchOptions`, :class:`FetchResult`, the progress
  callback, :class:`BlocksResult` and the block sink (a leaf: imports no other module
  here).
* ``api`` (``fetch_file``), ``get`` (``carget get``), ``cat`` (``carget cat``), ``blocks``
  (``fetch_blocks``) — the runs.
* ``race`` (who has the path's terminal block), ``file`` (a file's ranges split among
  workers, failover), ``tree`` (a whole entity, continued with what an answer left
  missing), ``inorder`` (``cat`` across gateways, still in order), ``fallback`` (the plain
  mirror) — the strategies.
* ``run`` — the state a run shares: gateways and their fates, errors, progress, the
  errors that end a run (``FATAL_ERRORS``), the nursery helper.
* ``request`` — one request: status handling, the receive → verify → write pipeline,
  the idle watchdog; ``channel`` — the bounded hand-off between its threads.
* ``split`` (sans-IO: sharing a range among requests, take-overs, gateway pace),
  ``verifier`` (sans-IO: CAR and DAG verification), ``target`` (input parsing),
  ``gateways`` (discovery, delegated routing).
* ``http`` (lean HTTP/1.1 requests and redirects), ``framing`` (sans-IO response reader),
  ``connection`` (TCP or TLS readable from trio and from a worker thread, kept
  connections, the trust store), ``proxy`` (sans-IO: the environment's proxy rules).
* ``outputs`` — where verified bytes go: ``file``, ``tree``, ``stdout``, ``car``,
  ``sink``, with ``journal``, ``recheck`` and ``disk`` beside them.

Whole-file digests are parsed and computed by :mod:`carget.digest`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["BlockSink", "BlocksResult", "FetchOptions", "FetchResult", "ProgressCallback",
           "fetch_blocks", "fetch_file", "fetch_file_sync"]

_LAZY = {
    "BlockSink": "carget.fetcher.types",
    "BlocksResult": "carget.fetcher.types",
    "FetchOptions": "carget.fetcher.types",
    "FetchResult": "carget.fetcher.types",
    "ProgressCallback": "carget.fetcher.types",
    "fetch_blocks": "carget.fetcher.blocks",
    "fetch_file": "carget.fetcher.api",
    "fetch_file_sync": "carget.fetcher.api",
}

if TYPE_CHECKING:
    from .api import fetch_file, fetch_file_sync
    from .blocks import fetch_blocks
    from .types import BlockSink, BlocksResult, FetchOptions, FetchResult, ProgressCallback


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'carget.fetcher' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
