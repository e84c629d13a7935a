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

Submodules: ``target`` (input parsing), ``gateways`` (discovery, delegated routing),
``verifier`` (sans-IO CAR + DAG verification), ``http`` (lean HTTP/1.1 requests and
redirects), ``framing`` (sans-IO response reader), ``connection`` (TCP or TLS readable
from trio and from a worker thread, kept connections, the trust store), ``proxy``
(sans-IO: the environment's proxy rules),
``stream`` (one request: receive, verify and write on three threads), ``split`` (sans-IO:
sharing a range among streams, take-overs, gateway pace), ``output`` (atomic files, trees,
resume journal, cat's segments), ``engine`` (racing, splitting, failover), ``inorder``
(``cat`` across gateways, still in order) and ``blocks`` (verified blocks to a callback).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["BlockSink", "BlocksResult", "FetchOptions", "FetchResult", "fetch_blocks",
           "fetch_file", "fetch_file_sync"]

_LAZY = {
    "BlockSink": "carget.fetcher.blocks",
    "BlocksResult": "carget.fetcher.blocks",
    "fetch_blocks": "carget.fetcher.blocks",
    "FetchOptions": "carget.fetcher.stream",
    "FetchResult": "carget.fetcher.api",
    "fetch_file": "carget.fetcher.api",
    "fetch_file_sync": "carget.fetcher.api",
}

if TYPE_CHECKING:
    from .api import FetchResult, fetch_file, fetch_file_sync
    from .blocks import BlockSink, BlocksResult, fetch_blocks
    from .stream import FetchOptions


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'carget.fetcher' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
