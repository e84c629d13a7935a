"""CIDs, multihashes and unsigned varints: the small byte-level facts everything shares.

Sans-IO and cheap to import (no ``multiformats``): these run on per-block paths, so a CID
is a plain slotted object compared by its binary form, and parsing a CID out of a buffer
measures its length with varints instead of treating "the rest" as the multihash.
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Callable
from functools import partial
from typing import Final, NamedTuple

from . import hashers, multibase
from .errors import CIDDecodeError, CIDParseError, HashMismatch, UsageError
from .hashers import Hasher

__all__ = [
    "ALIASES",
    "CID",
    "Block",
    "DAG_CBOR",
    "DAG_PB",
    "HASHES",
    "IDENTITY",
    "RAW",
    "SHA2_256",
    "SUPPORTED_HASHES",
    "HashFunction",
    "Hasher",
    "decode_varint",
    "encode_varint",
    "hash_function",
    "read_cid",
]

RAW: Final = 0x55
DAG_PB: Final = 0x70
DAG_CBOR: Final = 0x71
DAG_JSON: Final = 0x0129
LIBP2P_KEY: Final = 0x72

CODEC_NAMES: Final[dict[int, str]] = {
    RAW: "raw",
    DAG_PB: "dag-pb",
    DAG_CBOR: "dag-cbor",
    DAG_JSON: "dag-json",
    LIBP2P_KEY: "libp2p-key",
}

IDENTITY: Final = 0x00
SHA2_256: Final = 0x12

#: the longest varint we accept: 9 bytes hold 63 bits, which is all multiformats allows
MAX_VARINT_BYTES: Final = 9


#: the one-byte varints, made once: lengths and codes below 128 are most of what is encoded
_ONE_BYTE: Final = tuple(bytes((i,)) for i in range(0x80))


def encode_varint(n: int) -> bytes:
    """Unsigned LEB128, as multiformats' unsigned-varint (at most 63 bits)."""
    if n < 0x80:
        if n < 0:
            raise ValueError(f"negative varint {n}")
        return _ONE_BYTE[n]
    if n < 0x4000:  # two bytes: the sizes of small files' blocks
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def decode_varint(buf: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int]:
    """Read an unsigned varint at ``pos``; return ``(value, position after it)``.

    Raises :class:`IndexError` when the buffer ends inside the varint (so incremental
    parsers can ask for more data) and :class:`CIDDecodeError` for a varint that is
    longer than 9 bytes or not minimally encoded.
    """
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    result = b & 0x7F
    shift = 7
    start = pos
    pos += 1
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if b == 0:
                raise CIDDecodeError("varint is not minimally encoded", start)
            return result, pos
        shift += 7
        if pos - start >= MAX_VARINT_BYTES:
            raise CIDDecodeError("varint longer than 9 bytes", start)


class HashFunction:
    """A multihash function: its code, name, digest length and a way to hash bytes."""

    __slots__ = ("code", "digest_size", "name", "new", "prefix")

    def __init__(
        self, code: int, name: str, digest_size: int, new: Callable[[], Hasher] | None
    ) -> None:
        self.code = code
        self.name = name
        self.digest_size = digest_size
        self.new = new
        self.prefix = encode_varint(code) + encode_varint(digest_size)

    def digest(self, data: bytes | bytearray | memoryview) -> bytes:
        """The raw digest of ``data`` (not a multihash)."""
        if self.new is None:
            return bytes(data)
        h = self.new()
        h.update(data)
        return h.digest()

    def multihash(self, data: bytes | bytearray | memoryview) -> bytes:
        """The multihash of ``data``: code, length, digest."""
        if self.new is None:
            return encode_varint(IDENTITY) + encode_varint(len(data)) + bytes(data)
        return self.prefix + self.digest(data)


#: multicodec codes of the BLAKE2 ranges: code ``BLAKE2B_MIN + n - 1`` is an n-byte BLAKE2b
BLAKE2B_MIN: Final = 0xB201
BLAKE2S_MIN: Final = 0xB241
#: the shortest digest kubo takes (boxo verifcid's DefaultMinDigestSize): 20 bytes, so
#: blake2b-160 is the shortest BLAKE2b
MIN_DIGEST_SIZE: Final = 20


def _table() -> dict[str, HashFunction]:
    """Every hash ``ipfs add --hash`` takes in kubo 0.43.1, and identity (for --inline).

    That is each multihash boxo's verifcid allows (it refuses md5, murmur3, shake-128,
    digests under 20 bytes) that go-multihash v0.2.3 also computes (it has no keccak-224
    or keccak-384, and of BLAKE2s only blake2s-256). Digest lengths are go-multihash's
    defaults. The same table verifies blocks by code, so whatever carget can add it can
    verify, and a block under any other code is refused as unverifiable.
    """
    fns = [
        HashFunction(IDENTITY, "identity", 0, None),
        HashFunction(0x11, "sha1", 20, hashlib.sha1),
        HashFunction(SHA2_256, "sha2-256", 32, hashlib.sha256),
        HashFunction(0x13, "sha2-512", 64, hashlib.sha512),
        HashFunction(0x14, "sha3-512", 64, hashlib.sha3_512),
        HashFunction(0x15, "sha3-384", 48, hashlib.sha3_384),
        HashFunction(0x16, "sha3-256", 32, hashlib.sha3_256),
        HashFunction(0x17, "sha3-224", 28, hashlib.sha3_224),
        HashFunction(0x19, "shake-256", 64, hashers.shake_256_512),
        HashFunction(0x1B, "keccak-256", 32, partial(hashers.keccak, 256)),
        HashFunction(0x1D, "keccak-512", 64, partial(hashers.keccak, 512)),
        HashFunction(0x1E, "blake3", 32, hashers.blake3_256),
        HashFunction(0x56, "dbl-sha2-256", 32, hashers.dbl_sha2_256),
        *(
            HashFunction(BLAKE2B_MIN + n - 1, f"blake2b-{8 * n}", n, partial(hashers.blake2b, n))
            for n in range(MIN_DIGEST_SIZE, 65)
        ),
        HashFunction(BLAKE2S_MIN + 31, "blake2s-256", 32, hashers.blake2s_256),
    ]
    return {h.name: h for h in fns}


HASHES: Final[dict[str, HashFunction]] = _table()
#: other names kubo takes for a hash (go-multihash's ``Names``)
ALIASES: Final[dict[str, str]] = {"sha3": "sha3-512"}
_BY_CODE: Final[dict[int, HashFunction]] = {h.code: h for h in HASHES.values()}


def _describe() -> str:
    """The table's names for messages, the BLAKE2b run written as one range."""
    names = [n for n in HASHES if n != "identity" and not n.startswith("blake2b-")]
    short, long = 8 * MIN_DIGEST_SIZE, 8 * 64
    at = names.index("blake2s-256")
    names.insert(at, f"blake2b-{short}..blake2b-{long} (every 8 bits)")
    return ", ".join(names)


#: what ``--hash`` takes, for messages and help
SUPPORTED_HASHES: Final = _describe()


def hash_function(name_or_code: str | int) -> HashFunction:
    """Look up a hash function by multihash code, or by name as kubo does: lower-cased,
    with go-multihash's aliases (``sha3`` is sha3-512).

    Raises :class:`UsageError` for a name or code carget does not implement.
    """
    if isinstance(name_or_code, int):
        found = _BY_CODE.get(name_or_code)
    else:
        name = name_or_code.lower()
        found = HASHES.get(ALIASES.get(name, name))
    if found is None:
        what = hex(name_or_code) if isinstance(name_or_code, int) else repr(name_or_code)
        raise UsageError(f"unsupported hash function {what} (supported: {SUPPORTED_HASHES})")
    return found


class CID:
    """A content identifier. Immutable; equal when the binary forms are equal.

    ``multihash`` is the full multihash (code, length, digest); ``bytes`` is the binary CID
    (for CIDv0 the bare multihash).
    """

    __slots__ = ("_bytes", "codec", "multihash", "version")

    version: int
    codec: int
    multihash: bytes
    _bytes: bytes

    def __init__(self, version: int, codec: int, multihash: bytes) -> None:
        if version == 0:
            if codec != DAG_PB or multihash[:2] != b"\x12\x20" or len(multihash) != 34:
                raise UsageError("CIDv0 must be dag-pb with a sha2-256 multihash")
            raw = multihash
        elif version == 1:
            raw = b"\x01" + encode_varint(codec) + multihash
        else:
            raise UsageError(f"unsupported CID version {version}")
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "codec", codec)
        object.__setattr__(self, "multihash", multihash)
        object.__setattr__(self, "_bytes", raw)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("CID is immutable")

    @classmethod
    def _unchecked(cls, version: int, codec: int, multihash: bytes, raw: bytes) -> CID:
        """Build a CID from parts the caller has already validated (per-block hot paths:
        parsing CAR sections, hashing leaves), skipping ``__init__``'s checks."""
        cid = _new(cls)
        # the slots' own setters: a third cheaper than object.__setattr__ by name
        _set_version(cid, version)
        _set_codec(cid, codec)
        _set_multihash(cid, multihash)
        _set_bytes(cid, raw)
        return cid

    # --- construction -----------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> CID:
        """Parse a whole binary CID. Raises :class:`CIDDecodeError` on junk or leftovers."""
        cid, end = read_cid(data, 0)
        if end != len(data):
            raise CIDDecodeError(f"{len(data) - end} trailing bytes after CID", end)
        return cid

    @classmethod
    def parse(cls, text: str) -> CID:
        """Parse a CID from text: CIDv0 base58btc (``Qm…``) or any multibase CIDv1.

        Raises :class:`CIDParseError` when it does not parse.
        """
        text = text.strip()
        if len(text) == 46 and text.startswith("Qm"):
            raw = multibase.b58decode(text)
        else:
            raw = multibase.decode(text)
        try:
            cid = cls.from_bytes(raw)
        except (CIDDecodeError, IndexError, UsageError) as exc:
            raise CIDParseError(f"invalid CID {text!r}: {exc}") from None
        if cid.version == 0 and not text.startswith("Qm"):
            raise CIDParseError(f"invalid CID {text!r}: CIDv0 must be bare base58btc")
        return cid

    @classmethod
    def of(
        cls,
        data: bytes | bytearray | memoryview,
        codec: int,
        version: int = 1,
        hasher: HashFunction | None = None,
    ) -> CID:
        """The CID of ``data`` with ``codec`` and ``hasher`` (sha2-256 by default)."""
        h = hasher or HASHES["sha2-256"]
        return cls(version, codec, h.multihash(data))

    # --- views ------------------------------------------------------------------------

    @property
    def hash_code(self) -> int:
        return decode_varint(self.multihash, 0)[0]

    @property
    def digest(self) -> bytes:
        _, pos = decode_varint(self.multihash, 0)
        _, pos = decode_varint(self.multihash, pos)
        return self.multihash[pos:]

    @property
    def is_identity(self) -> bool:
        return self.multihash[0] == IDENTITY

    @property
    def codec_name(self) -> str:
        return CODEC_NAMES.get(self.codec, hex(self.codec))

    def encode(self, base: str | None = None) -> str:
        """Text form: base58btc for CIDv0, base32 for CIDv1, unless ``base`` is given."""
        if self.version == 0:
            if base not in (None, "base58btc"):
                raise UsageError("CIDv0 can only be written in base58btc")
            return multibase.b58encode(self._bytes)
        return multibase.encode(self._bytes, base or "base32")

    def to_v1(self) -> CID:
        return self if self.version == 1 else CID(1, self.codec, self.multihash)

    def to_v0(self) -> CID:
        if self.version == 0:
            return self
        return CID(0, self.codec, self.multihash)

    def verify(self, data: bytes | bytearray | memoryview) -> None:
        """Check that ``data`` hashes to this CID's multihash.

        Raises :class:`HashMismatch` when it does not, :class:`UsageError` for a hash
        function carget does not implement.
        """
        mh = self.multihash
        if mh[0] == SHA2_256 and mh[1] == 32:
            ok = hashlib.sha256(data).digest() == mh[2:]
        else:
            ok = hash_function(self.hash_code).multihash(data) == mh
        if not ok:
            raise HashMismatch(f"block {self} does not match its hash")

    def __str__(self) -> str:
        return self.encode()

    def __repr__(self) -> str:
        return f"CID({self.encode()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CID) and other._bytes == self._bytes

    def __hash__(self) -> int:
        return hash(self._bytes)

    def __lt__(self, other: CID) -> bool:
        return self._bytes < other._bytes

    # last in the class body: inside it, the name ``bytes`` now means this property
    @property
    def bytes(self) -> builtins.bytes:
        """The binary CID (for CIDv0, the bare multihash)."""
        return self._bytes


_new = object.__new__
_set_version = CID.__dict__["version"].__set__
_set_codec = CID.__dict__["codec"].__set__
_set_multihash = CID.__dict__["multihash"].__set__
_set_bytes = CID.__dict__["_bytes"].__set__


def read_cid(buf: bytes | bytearray | memoryview, pos: int) -> tuple[CID, int]:
    """Parse a binary CID starting at ``pos``; return it and the position after it.

    The CID's length is measured from its varints, so trailing bytes (a CAR block) are
    left alone. Raises :class:`IndexError` if the buffer ends inside the CID and
    :class:`CIDDecodeError` for a CID that cannot be valid.
    """
    start = pos
    if buf[pos] == 0x12 and buf[pos + 1] == 0x20:
        end = pos + 34
        if end > len(buf):
            raise IndexError("buffer ends inside CID")
        mh = bytes(buf[pos:end])
        return CID._unchecked(0, DAG_PB, mh, mh), end
    if buf[pos] == 1 and buf[pos + 1] < 0x80 and buf[pos + 2] == 0x12 and buf[pos + 3] == 0x20:
        # CIDv1 with a one-byte codec and a sha2-256 multihash: nearly every CID in a CAR
        end = pos + 36
        if end > len(buf):
            raise IndexError("buffer ends inside CID")
        raw = bytes(buf[pos:end])
        return CID._unchecked(1, raw[1], raw[2:], raw), end
    version, pos = decode_varint(buf, pos)
    if version != 1:
        raise CIDDecodeError(f"unsupported CID version {version}", start)
    codec, pos = decode_varint(buf, pos)
    mh_start = pos
    _code, pos = decode_varint(buf, pos)
    length, pos = decode_varint(buf, pos)
    end = pos + length
    if end > len(buf):
        if length > 1 << 20:
            raise CIDDecodeError(f"multihash length {length} is absurd", start)
        raise IndexError("buffer ends inside CID")
    mh = bytes(buf[mh_start:end])
    return CID._unchecked(1, codec, mh, bytes(buf[start:end])), end


class Block(NamedTuple):
    """A block: its CID and its bytes (a memoryview when borrowed from a buffer)."""

    cid: CID
    data: bytes | memoryview
