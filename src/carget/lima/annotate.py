"""``carget lima annotate``: compute each entry's CID (and digest) and write them in.

Each file is read once: from ``--from-dir`` (matched by the last path segment of its
location) or streamed over HTTP(S) from its location. The one pass computes both the
UnixFS CID (kubo's ``ipfs add --cid-version=1`` defaults: 256 KiB chunks, raw leaves,
balanced DAG of 174 links, what lima's proposal uses) and the whole-file digest, in
bounded memory: the HTTP body goes straight into :func:`carget.add.import_stream` through a
small reader adapter, nothing is stored.

A computed digest that differs from the template's ``digest:`` is an error
(:class:`DigestMismatch`, exit 5): the template is never silently changed to match what a
server happens to serve.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..add import add_file, import_stream
from ..cid import CID
from ..errors import DigestMismatch, FetchTimeout, InputError, NetworkError, NotFoundError
from ..unixfs.options import ImportOptions, resolve_options
from .compose import Composed
from .edit import Annotation, annotate_text
from .template import Entry, Template, select

__all__ = [
    "AnnotateResult",
    "Computed",
    "FileEdit",
    "annotate",
    "compute_file",
    "compute_url",
    "lima_import_options",
]

#: the gateway spec's idle timeout: no new bytes for this long fails the download
HTTP_IDLE_TIMEOUT = 30.0
#: body bytes per read from httpx: large reads keep per-chunk overhead off the hashing path
HTTP_CHUNK = 1024 * 1024
#: HTTP statuses that mean "this location has no such file" (exit 3, not a network error)
_GONE = (404, 410)


def lima_import_options() -> ImportOptions:
    """``ipfs add --cid-version=1`` as kubo resolves it: the CIDs lima templates carry."""
    return resolve_options(cid_version=1)


@dataclass(frozen=True, slots=True)
class Computed:
    """One file's identity as computed from its bytes."""

    cid: CID
    digest: str
    size: int
    source: str  # the local path or URL read


@dataclass(frozen=True, slots=True)
class FileEdit:
    """One file of the template and its new text."""

    template: Template  # the file as read (its ``path`` is how messages name it)
    target: str  # the file to replace: a symlinked alias is written through
    text: str  # the new text (the old one when nothing changes)
    read_only: str | None  # why carget may not write it (lima's installed templates, a URL)

    @property
    def changed(self) -> bool:
        return self.text != self.template.text


@dataclass(frozen=True, slots=True)
class AnnotateResult:
    """The new text of each file and what was found for each selected entry."""

    files: list[FileEdit]
    rows: list[tuple[Entry, Computed, str]]  # (entry, computed, "added"/"updated"/"same")

    @property
    def text(self) -> str:
        """The new text of the template itself (its first file)."""
        return self.files[0].text


def _algo(entry: Entry) -> str:
    return entry.digest.partition(":")[0] if entry.digest else "sha256"


class _ChunkReader:
    """``readinto`` over an iterator of byte chunks (an HTTP body), without buffering it."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""
        self._pos = 0

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        while self._pos >= len(self._buf):
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
            self._pos = 0
        n = min(len(buffer), len(self._buf) - self._pos)
        buffer[:n] = self._buf[self._pos : self._pos + n]
        self._pos += n
        return n


def compute_file(path: str | os.PathLike[str], algo: str = "sha256") -> Computed:
    """CID and digest of a local file. Raises :class:`InputError` if it cannot be read."""
    res = add_file(path, lima_import_options(), digest=algo)
    assert res.digest is not None
    return Computed(res.cid, res.digest, res.size, os.fspath(path))


def compute_url(
    url: str,
    algo: str = "sha256",
    *,
    client: httpx.Client | None = None,
    progress: Callable[[int], None] | None = None,
) -> Computed:
    """Stream ``url`` once and compute its CID and digest on the way.

    Raises :class:`NotFoundError` for 404/410, :class:`FetchTimeout` when no bytes arrive
    for :data:`HTTP_IDLE_TIMEOUT`, :class:`NetworkError` for other HTTP or connection
    failures.
    """
    own = client is None
    if client is None:
        client = httpx.Client(
            follow_redirects=True,
            timeout=httpx.Timeout(HTTP_IDLE_TIMEOUT),
            # the digest is of the file as stored: ask for it without transfer encodings
            headers={"Accept-Encoding": "identity"},
        )
    try:
        with client.stream("GET", url) as resp:
            if resp.status_code in _GONE:
                raise NotFoundError(f"{url}: HTTP {resp.status_code}")
            if not resp.is_success:
                raise NetworkError(f"{url}: HTTP {resp.status_code}")
            reader = _ChunkReader(resp.iter_bytes(HTTP_CHUNK))
            res = import_stream(reader, lima_import_options(), digest=algo, progress=progress)
    except httpx.TimeoutException as exc:
        raise FetchTimeout(f"{url}: timed out ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise NetworkError(f"{url}: {exc or type(exc).__name__}") from None
    finally:
        if own:
            client.close()
    assert res.digest is not None
    return Computed(res.cid, res.digest, res.size, url)


def _plan(entries: list[Entry], from_dir: str | None) -> dict[str, str]:
    """Where each location will be read from; checks every entry before any work."""
    plan: dict[str, str] = {}
    for e in entries:
        if e.location in plan:
            continue
        if from_dir is not None:
            local = Path(from_dir) / e.name
            if not e.name or not local.is_file():
                raise InputError(f"{e.at} (line {e.line}): {e.name!r} not found in {from_dir}")
            plan[e.location] = str(local)
        elif not e.is_remote:
            raise InputError(
                f"{e.at} (line {e.line}): location {e.location!r} is not http(s); "
                "use --from-dir to annotate local files"
            )
        else:
            plan[e.location] = e.location
    return plan


def _files(template: Template | Composed) -> list[tuple[Template, str, str | None]]:
    """(file, path to write, why read-only) for each distinct file of ``template``: a file
    reached twice (an alias and its target) is edited once, through its first part."""
    if isinstance(template, Template):
        return [(template, template.path, None)]
    out: list[tuple[Template, str, str | None]] = []
    targets: set[str] = set()
    for part in template.parts:
        target = part.real or part.locator
        if target in targets:
            continue
        targets.add(target)
        out.append((part.template, part.real or part.locator, part.read_only))
    return out


def annotate(
    template: Template | Composed,
    *,
    arch: str | None = None,
    from_dir: str | None = None,
    report: Callable[[Entry, Computed], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> AnnotateResult:
    """Compute CIDs for the entries of ``arch`` (all when None) and return each file's new
    text: every ``cid:`` goes into the file that holds its entry (an ``_images`` base of a
    lima 2 template), the rest of every file byte for byte.

    Each location is read once even if several entries name it. Raises
    :class:`InputError` for an entry whose file cannot be found or read (or whose location
    is not http(s) without ``from_dir``), :class:`DigestMismatch` (exit 5) when the bytes
    disagree with the template's digest, the network errors of :func:`compute_url`, and
    :func:`annotate_text`'s errors. Nothing is written here.
    """
    if from_dir is not None and not os.path.isdir(from_dir):
        raise InputError(f"--from-dir {from_dir}: not a directory")
    files = _files(template)
    owner = {id(e): id(f[0]) for f in files for e in f[0].entries}
    entries = [e for e in select(template.entries, arch) if id(e) in owner]
    plan = _plan(entries, from_dir)
    done: dict[tuple[str, str], Computed] = {}
    notes: dict[int, list[Annotation]] = {}
    rows: list[tuple[Entry, Computed, str]] = []
    with httpx.Client(
        follow_redirects=True,
        timeout=httpx.Timeout(HTTP_IDLE_TIMEOUT),
        headers={"Accept-Encoding": "identity"},
    ) as client:
        for e in entries:
            algo = _algo(e)
            key = (e.location, algo)
            got = done.get(key)
            if got is None:
                source = plan[e.location]
                try:
                    if from_dir is not None:
                        got = compute_file(source, algo)
                    else:
                        got = compute_url(source, algo, client=client, progress=progress)
                except (InputError, NetworkError, NotFoundError) as exc:
                    raise type(exc)(f"{e.at} (line {e.line}): {exc}") from None
                done[key] = got
            if report is not None:
                report(e, got)
            if e.digest is not None and e.digest != got.digest:
                raise DigestMismatch(
                    f"{e.at} (line {e.line}): {got.source} has digest {got.digest}, "
                    f"the template says {e.digest}; template left unchanged"
                )
            cid = str(got.cid)
            status = "same" if e.cid == got.cid else ("updated" if e.cid else "added")
            notes.setdefault(owner[id(e)], []).append(
                Annotation(e, cid, None if e.digest else got.digest))
            rows.append((e, got, status))
    edits = [FileEdit(tpl, target, annotate_text(tpl, notes.get(id(tpl), [])), read_only)
             for tpl, target, read_only in files]
    return AnnotateResult(edits, rows)
