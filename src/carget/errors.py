"""carget's exceptions: one root, and every class knows the exit code the CLI maps it to.

The tree::

    CargetError                      (exit 1)  root of everything carget raises on purpose
    ├── UsageError                   (exit 2)  the caller asked for something impossible:
    │   │                                      bad option, unknown hash, unparsable CID text
    │   ├── CIDParseError            (exit 2)  a CID string or a multibase string is malformed
    │   └── UnsupportedCodec         (exit 2)  a walk needs links of a codec carget cannot
    │                                          read (the gateway answers 501)
    ├── InputError                   (exit 1)  a local path is missing, unreadable or of the
    │                                          wrong kind (directory without -r, FIFO, device)
    ├── UnsafePathError              (exit 4)  a DAG carries a name or symlink that would land
    │   │                                      outside the output directory, or a path too deep
    │   └── DuplicateName                      a directory or HAMT lists one name twice
    ├── DecodeError                  (exit 4)  bytes from outside are not what they claim;
    │   │                                      carries ``offset`` where the problem starts
    │   ├── DagPBError                         malformed dag-pb node
    │   ├── UnixFSError                        malformed or inconsistent UnixFS Data
    │   ├── CIDDecodeError                     a binary CID that does not parse
    │   ├── DagCBORError                       a dag-cbor block (its hash right) that does
    │   │                                      not decode
    │   └── CARError                           malformed CAR stream or file
    │       ├── LimitExceeded                  a length prefix above a named limit
    │       └── WrongAnswer                    a gateway's 200 that is not a CAR
    ├── VerificationError            (exit 4)  a block's hash or place in the DAG is wrong
    │   ├── HashMismatch                       a block's bytes do not hash to its CID
    │   ├── IncompleteDAG                      a block the DAG needs never arrived
    │   └── UnexpectedBlocks                   blocks nobody asked for instead of the right
    │                                          ones: a substitution, i.e. a lie
    ├── NotFoundError                (exit 3)  no gateway has the content, or a path is absent
    │   └── PathNotFound                       a verified block proves the path is absent
    ├── DigestMismatch               (exit 5)  the finished file's digest is not the expected one
    └── NetworkError                 (exit 6)  connection failures, HTTP errors, timeouts
        ├── FetchTimeout             (exit 6)  no new bytes for too long, or the run's deadline
        └── RetryLater               (exit 6)  a 429 or 5xx: ask that gateway again later

"You called it wrong" (:class:`UsageError`) is kept apart from "the peer or file sent
garbage" (:class:`DecodeError`, :class:`VerificationError`), as h11 and httpx do.
"""

from __future__ import annotations

__all__ = [
    "CARError",
    "CIDDecodeError",
    "CIDParseError",
    "CargetError",
    "DagCBORError",
    "DagPBError",
    "DecodeError",
    "DigestMismatch",
    "DuplicateName",
    "FetchTimeout",
    "HashMismatch",
    "IncompleteDAG",
    "InputError",
    "LimitExceeded",
    "NetworkError",
    "NotFoundError",
    "OutputError",
    "PathNotFound",
    "RetryLater",
    "UnexpectedBlocks",
    "UnixFSError",
    "UnsafePathError",
    "UnsupportedCodec",
    "UsageError",
    "VerificationError",
    "WrongAnswer",
]


class CargetError(Exception):
    """Root of every error carget raises on purpose."""

    exit_code: int = 1


class UsageError(CargetError):
    """The caller asked for something impossible (bad option, unknown hash, ...)."""

    exit_code = 2


class CIDParseError(UsageError):
    """A CID given as text does not parse."""


class UnsupportedCodec(UsageError):
    """A path or a walk needs links from a codec carget cannot read (HTTP 501)."""


class InputError(CargetError):
    """A local input path is missing, unreadable, or of a kind that cannot be added."""


class OutputError(CargetError):
    """The output cannot be written: the disk is full, the file is too large for it, or
    the system refused a write. Not a gateway's fault, so no other gateway is tried."""


class UnsafePathError(CargetError):
    """A DAG names an entry or symlink that would escape the output directory, or holds
    a path longer than an output may (:data:`carget.names.MAX_PATH_BYTES`)."""

    exit_code = 4


class DuplicateName(UnsafePathError):
    """A directory (or a HAMT shard, across its sub-shards) lists one name twice: the
    second entry would be written over, or through, the first. Every gateway serves the
    same DAG, so this is the content's fault, not a gateway's."""


class DecodeError(CargetError):
    """Bytes from outside (a file, a gateway) are malformed.

    ``offset`` is the byte offset in the stream where the problem was found, when known.
    """

    exit_code = 4

    def __init__(self, message: str, offset: int | None = None) -> None:
        if offset is not None:
            message = f"{message} (at byte {offset})"
        super().__init__(message)
        self.offset = offset


class DagPBError(DecodeError):
    """A dag-pb node is malformed or not in canonical form."""


class UnixFSError(DecodeError):
    """UnixFS Data is malformed or disagrees with the blocks it describes."""


class DagCBORError(DecodeError):
    """A dag-cbor block is not strict DAG-CBOR. Its hash was checked, so it is the
    content's fault: every gateway serves the same bytes."""


class CIDDecodeError(DecodeError):
    """A binary CID does not parse."""


class CARError(DecodeError):
    """A CAR stream or file is malformed."""


class LimitExceeded(CARError):
    """A length prefix or size exceeds a named limit (kept so hostile input cannot OOM us)."""


class WrongAnswer(CARError):
    """A 200 that is not a CAR (wrong Content-Type): the gateway is not trustless."""


class VerificationError(CargetError):
    """A block failed verification, or the DAG is incomplete."""

    exit_code = 4


class HashMismatch(VerificationError):
    """A block's bytes do not hash to the multihash in its CID."""


class IncompleteDAG(VerificationError):
    """A block that the DAG needs is missing (a stream ended early, a CAR lacks it)."""


class UnexpectedBlocks(VerificationError):
    """The answer ended without the blocks asked for, and held blocks that belong to
    nothing asked for instead: a substitution, which is a lie, not a mere cut."""


class NotFoundError(CargetError):
    """No gateway had the content, or a path inside the DAG does not exist."""

    exit_code = 3


class PathNotFound(NotFoundError):
    """A verified block proves the path does not exist (every gateway would agree), as
    opposed to an answer that merely stops before the path resolves."""


class DigestMismatch(CargetError):
    """The finished file's digest differs from the one the caller expected."""

    exit_code = 5


class NetworkError(CargetError):
    """A network failure: connection refused, HTTP error status, broken stream."""

    exit_code = 6


class FetchTimeout(NetworkError):
    """No new bytes arrived within the idle timeout, or the whole run ran out of time."""


class RetryLater(NetworkError):
    """A 429 or 5xx answer: ask this gateway again after ``delay`` seconds."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay
