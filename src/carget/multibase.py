"""Multibase text encodings used for CIDs, on the standard library alone.

``add`` prints CIDs on every run, so this module must stay cheap to import: no
``multiformats`` here. Supported: base58btc (``z`` and bare CIDv0), base32 lower/upper
(``b``/``B``), base16 (``f``/``F``), base36 lower/upper (``k``/``K``), base64 (``m``) and
base64url (``u``), all without padding as the multibase table specifies.
"""

from __future__ import annotations

import base64
import binascii

from .errors import CIDParseError

__all__ = ["BASES", "b58decode", "b58encode", "decode", "encode"]

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"

#: multibase name -> prefix character
BASES: dict[str, str] = {
    "base58btc": "z",
    "base32": "b",
    "base32upper": "B",
    "base16": "f",
    "base16upper": "F",
    "base36": "k",
    "base36upper": "K",
    "base64": "m",
    "base64url": "u",
}


_B58_POW = 58**10  # ten base58 digits per big-int division: one divmod per 10 digits
_B58_PAIRS = [a + b for a in _B58 for b in _B58]  # two digits per table lookup


def b58encode(data: bytes) -> str:
    """base58btc, as CIDv0 is printed on every ``add`` line (kept cheap: per-file cost)."""
    n = int.from_bytes(data, "big")
    groups: list[str] = []
    pairs = _B58_PAIRS
    while n:
        n, r = divmod(n, _B58_POW)
        # r < 58**10: five two-digit groups, least significant first
        g = []
        for _ in range(5):
            r, d = divmod(r, 3364)
            g.append(pairs[d])
        groups.append("".join(reversed(g)))
    body = "".join(reversed(groups)).lstrip("1")
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + body


def b58decode(text: str) -> bytes:
    n = 0
    try:
        for c in text:
            n = n * 58 + _B58_INDEX[c]
    except KeyError:
        raise CIDParseError(f"invalid base58btc character in {text!r}") from None
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def _b36encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_B36[r])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "0" * zeros + "".join(reversed(out))


def _b36decode(text: str) -> bytes:
    text = text.lower()
    try:
        n = int(text, 36) if text else 0
    except ValueError:
        raise CIDParseError(f"invalid base36 text {text!r}") from None
    zeros = len(text) - len(text.lstrip("0"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def _pad(text: str, block: int) -> str:
    return text + "=" * (-len(text) % block)


def encode(data: bytes, base: str) -> str:
    """Encode ``data`` as multibase text with its prefix character.

    Raises :class:`CIDParseError` (a usage error) for an unknown base name.
    """
    if base == "base58btc":
        return "z" + b58encode(data)
    if base in ("base32", "base32upper"):
        text = base64.b32encode(data).decode().rstrip("=")
        return "b" + text.lower() if base == "base32" else "B" + text
    if base == "base16":
        return "f" + data.hex()
    if base == "base16upper":
        return "F" + data.hex().upper()
    if base == "base36":
        return "k" + _b36encode(data)
    if base == "base36upper":
        return "K" + _b36encode(data).upper()
    if base == "base64":
        return "m" + base64.b64encode(data).decode().rstrip("=")
    if base == "base64url":
        return "u" + base64.urlsafe_b64encode(data).decode().rstrip("=")
    raise CIDParseError(f"unknown multibase {base!r} (known: {', '.join(BASES)})")


def decode(text: str) -> bytes:
    """Decode multibase text (prefix character first) to bytes.

    Raises :class:`CIDParseError` for an unknown prefix or malformed text.
    """
    if not text:
        raise CIDParseError("empty multibase string")
    prefix, body = text[0], text[1:]
    try:
        if prefix == "z":
            return b58decode(body)
        if prefix in "bB":
            return base64.b32decode(_pad(body.upper(), 8))
        if prefix in "fF":
            return bytes.fromhex(body)
        if prefix in "kK":
            return _b36decode(body)
        if prefix == "m":
            return base64.b64decode(_pad(body, 4), validate=True)
        if prefix == "u":
            return base64.urlsafe_b64decode(_pad(body, 4))
    except (binascii.Error, ValueError):
        raise CIDParseError(f"malformed multibase text {text!r}") from None
    raise CIDParseError(f"unknown multibase prefix {prefix!r} in {text!r}")
