"""carget: IPFS content without kubo.

The public face is small and loads lazily, so ``import carget`` stays cheap::

    from carget import add_file, resolve_options
    result = add_file("ubuntu.img", resolve_options(cid_version=1), digest="sha256")
    print(result.cid, result.digest)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "CID",
    "AddResult",
    "Block",
    "CargetError",
    "ImportOptions",
    "add_bytes",
    "add_file",
    "resolve_options",
]

#: the one place for carget's version (pyproject.toml reads it from here)
__version__ = "0.1.0"

_LAZY = {
    "CID": "carget.cid",
    "Block": "carget.cid",
    "AddResult": "carget.add",
    "add_file": "carget.add",
    "add_bytes": "carget.add",
    "ImportOptions": "carget.unixfs.options",
    "resolve_options": "carget.unixfs.options",
    "CargetError": "carget.errors",
}

if TYPE_CHECKING:
    from .add import AddResult, add_bytes, add_file
    from .cid import CID, Block
    from .errors import CargetError
    from .unixfs.options import ImportOptions, resolve_options


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'carget' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
