"""Hash objects for the multihash functions hashlib has no plain constructor for.

Every function ``ipfs add --hash`` takes in kubo 0.43.1 is a multihash code that boxo's
``verifcid`` allows and go-multihash v0.2.3 can compute; :data:`carget.cid.HASHES` lists
them, with these constructors where hashlib alone does not give the multihash's digest:

* ``dbl-sha2-256`` (0x56): SHA-256 of the SHA-256 digest (go-multihash ``core/errata.go``);
* ``shake-256`` (0x19): the first 64 bytes of SHAKE256's output (go-multihash registers it
  with twice its 256-bit security level as the digest length);
* ``keccak-256`` / ``keccak-512`` (0x1b, 0x1d): the original Keccak padding (``0x01``), not
  SHA-3's (``0x06``), through pycryptodomex;
* ``blake3`` (0x1e): 32 bytes by default, through the ``blake3`` package;
* ``blake2b-N`` and ``blake2s-256``: hashlib with the digest size as a BLAKE2 parameter
  (it changes every byte of the output: a shorter BLAKE2b is not a truncated longer one).

Each returns an object with ``update(data)`` and ``digest()``. The two third-party
packages are imported on first use, so importing :mod:`carget.cid` stays cheap.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

__all__ = [
    "Hasher",
    "blake2b",
    "blake2s_256",
    "blake3_256",
    "dbl_sha2_256",
    "keccak",
    "shake_256_512",
]


class Hasher(Protocol):
    """What a multihash needs of a hash object (hashlib's own objects qualify)."""

    def update(self, data: bytes | bytearray | memoryview, /) -> object: ...

    def digest(self) -> bytes: ...


class _DoubleSha256:
    """``sha256(sha256(data))``: the inner hash streams, the outer one hashes its digest."""

    __slots__ = ("_inner",)

    def __init__(self) -> None:
        self._inner = hashlib.sha256()

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        self._inner.update(data)

    def digest(self) -> bytes:
        return hashlib.sha256(self._inner.digest()).digest()


class _Shake256:
    """SHAKE256 read out to a fixed length (hashlib's ``digest`` needs the length)."""

    __slots__ = ("_h", "_size")

    def __init__(self, size: int) -> None:
        self._h = hashlib.shake_256()
        self._size = size

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        self._h.update(data)

    def digest(self) -> bytes:
        return self._h.digest(self._size)


def dbl_sha2_256() -> Hasher:
    return _DoubleSha256()


def shake_256_512() -> Hasher:
    """SHAKE256 with a 64-byte (512-bit) output, go-multihash's ``shake-256``."""
    return _Shake256(64)


def blake2b(size: int) -> Hasher:
    """BLAKE2b with a ``size``-byte digest (1..64), unkeyed."""
    return hashlib.blake2b(digest_size=size)


def blake2s_256() -> Hasher:
    return hashlib.blake2s(digest_size=32)


def blake3_256() -> Hasher:
    """BLAKE3, unkeyed, its default 32-byte output."""
    from blake3 import blake3

    h: Hasher = blake3()
    return h


def keccak(bits: int) -> Hasher:
    """Keccak with the original padding and a ``bits``-bit digest (256 or 512)."""
    from Cryptodome.Hash import keccak as _keccak

    h: Hasher = _keccak.new(digest_bits=bits)
    return h
