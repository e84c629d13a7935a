"""``carget lima prefetch``: fetch a template's entries by CID into lima's cache.

For each entry lima would try for the chosen arch (see :func:`carget.lima.template.pick`:
images of the arch and of one variant, with their kernel and initrd, archives, firmware),
from the template and every ``base:`` it names (:mod:`carget.lima.compose`):

* already in the cache with the template's digest (what lima itself trusts): skipped;
* with a ``cid:``: fetched through :func:`carget.fetcher.fetch_file` (every block verified,
  gateways raced, resumable: the staging path is keyed by the location, so an interrupted
  run resumes), the digest checked, then the entry renamed into place;
* without a ``cid:``: listed as skipped, or with ``fallback`` downloaded from its location
  with the digest check (an entry with neither cid nor digest is never downloaded: carget
  places nothing it could not verify).

Lima images and archives are files: an entry whose ``cid:`` turns out to be a directory (or
a symlink) fails with :class:`UsageError` (exit 2, as ``carget get --digest`` of a
directory) as soon as the gateways name the root's kind, before its tree is fetched.

Entries sharing a ``location:`` are one cache entry, fetched once and checked against the
digest any of them gives; a template that gives one location two different digests is
refused before anything is fetched (:class:`InputError`, exit 1, like every other template
that cannot be right).

Entries run concurrently up to :data:`CONCURRENT_ENTRIES`. One entry failing does not stop
the others; every outcome is returned for the summary table and the caller picks the exit
code. Bad input (an entry whose location is not http(s), an unwritable cache) is refused
before anything is fetched or written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from ..digest import NotRegularFile, file_digest, new_hasher
from ..errors import (
    CargetError,
    DigestMismatch,
    FetchTimeout,
    InputError,
    NetworkError,
    NotFoundError,
    UsageError,
    VerificationError,
)
from .cache import LimaCache
from .compose import Composed
from .template import Entry, Template, pick

__all__ = [
    "CONCURRENT_ENTRIES",
    "Outcome",
    "ProgressHooks",
    "event_bytes",
    "exit_error",
    "location_digests",
    "plan_prefetch",
    "prefetch",
]

#: entries fetched at once: the fetcher already splits one file across connections, so a
#: few entries in flight keep the link busy without thrashing the disk
CONCURRENT_ENTRIES = 3
#: the gateway spec's idle timeout, also used for the plain HTTP(S) fallback
HTTP_IDLE_TIMEOUT = 30.0
#: bytes per read of a fallback body (large reads keep per-chunk cost off the hot path)
HTTP_CHUNK = 1024 * 1024


@dataclass(slots=True)
class Outcome:
    """One row of the summary table."""

    entry: Entry
    result: str  # "fetched", "cached", "skipped: ...", "failed: ..."
    source: str  # "ipfs", "fallback", "location", "cache", "-"
    size: int | None = None
    seconds: float = 0.0
    error: CargetError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(slots=True)
class ProgressHooks:
    """Callbacks for a progress display: ``start(entry, total_or_None)``,
    ``advance(entry, done_bytes_or_None, total_or_None)``, ``finish(entry)``."""

    start: Callable[[Entry, int | None], None]
    advance: Callable[[Entry, int | None, int | None], None]
    finish: Callable[[Entry], None]


def plan_prefetch(
    template: Template | Composed, arch: str, variant: str | None = None
) -> list[Entry]:
    """The entries to prefetch for ``arch``: those lima would try, picked as lima picks
    them (see :func:`carget.lima.template.pick`: the images of the arch and of the first
    such image's variant, or of ``variant``, each with its kernel and initrd; archives and
    firmware of the arch). Raises :class:`InputError` naming the first entry whose
    location is not http(s) (lima never caches local files), or the first location the
    template gives two different digests (see :func:`location_digests`)."""
    entries = pick(template.entries, arch, variant)
    for e in entries:
        if not e.is_remote:
            raise InputError(
                f"{e.at} (line {e.line}): location {e.location!r} is not http(s); "
                "lima does not cache local files"
            )
    location_digests(template)
    return entries


def location_digests(template: Template | Composed) -> dict[str, str]:
    """The digest of each location that has one, over every entry of every arch.

    One location is one file, and lima keeps one cache entry per location, so two entries
    naming it must agree. Raises :class:`InputError` naming the location, both entries
    and both digests when they do not (different algorithms count as different too: carget
    would have to check both, and a template has no reason to give two).
    """
    seen: dict[str, Entry] = {}
    for e in template.entries:
        if e.digest is None:
            continue
        other = seen.setdefault(e.location, e)
        if other.digest != e.digest:
            raise InputError(
                f"location {e.location} has two digests: {other.digest} "
                f"({other.at}, line {other.line}) and {e.digest} ({e.at}, line {e.line})"
            )
    return {loc: e.digest for loc, e in seen.items() if e.digest is not None}


def _cached(cache: LimaCache, entry: Entry) -> bool:
    if entry.digest is not None:
        return cache.has(entry.location, entry.digest)
    # no digest: lima uses whatever the entry holds, so carget does too
    return (cache.entry_dir(entry.location) / "data").is_file()


def _file_digest(path: Path, algo: str) -> str:
    """``algo:HEX`` of the regular file ``path``. Raises :class:`UsageError` when ``path``
    is not a regular file (what the CID named was not a file), :class:`InputError` when it
    cannot be read."""
    try:
        # a symlink is not followed: what the fetcher left is read only if it is the file
        return file_digest(path, algo)
    except NotRegularFile:
        raise UsageError(f"{path} is not a file: lima images and archives are files") from None
    except OSError as exc:
        raise InputError(f"cache: cannot read {path}: {exc.strerror or exc}") from None


def event_bytes(event: dict[str, Any]) -> tuple[int | None, int | None]:
    """(bytes done, total bytes) from a :mod:`carget.fetcher` progress event, either None
    when the event does not say: ``resolved`` gives the size, ``resume`` the bytes kept
    from an earlier run, ``progress`` both."""
    kind = event.get("event")
    done = event.get("bytes") if kind in ("progress", "resume") else None
    total = event.get("total") if kind == "progress" else (
        event.get("size") if kind == "resolved" else None)
    return (done if isinstance(done, int) else None,
            total if isinstance(total, int) else None)


async def _fetch_cid(
    entry: Entry, out: Path, *, gateways: list[str], fallback: bool,
    timeout: float | None, hooks: ProgressHooks | None,
) -> tuple[str, str | None]:
    """Fetch ``entry.cid`` to ``out``; return (source, digest or None).

    Raises what :func:`carget.fetcher.fetch_file` raises, and :class:`UsageError` when the
    CID is not a file: the fetcher names the root's kind (its ``resolved`` event) before it
    fetches anything under it, and raising there ends the fetch with nothing written.
    """
    from ..fetcher import fetch_file

    assert entry.cid is not None

    def progress(event: dict[str, Any]) -> None:
        if event.get("event") == "resolved" and event.get("kind") != "file":
            raise UsageError(f"{event.get('cid') or entry.cid} is a {event.get('kind')}, "
                             "not a file: lima images and archives are files")
        if hooks is not None:
            done, total = event_bytes(event)
            if done is not None or total is not None:
                hooks.advance(entry, done, total)

    res = await fetch_file(
        f"ipfs://{entry.cid}", out, gateways=gateways, digest=entry.digest,
        fallback_url=entry.location if fallback and entry.digest else None,
        timeout=timeout, progress=progress,
    )
    return res.source, res.digest


async def _fetch_location(
    entry: Entry, out: Path, *, timeout: float | None, hooks: ProgressHooks | None
) -> str:
    """Download ``entry.location`` to ``out``, hashing on the way; return the digest.

    The body goes to ``out.part`` first, so ``out`` is only ever a complete body; the part
    file is removed on any failure. Raises :class:`NotFoundError` (404/410),
    :class:`FetchTimeout`, :class:`NetworkError`.
    """
    assert entry.digest is not None
    algo = entry.digest.partition(":")[0]
    h = new_hasher(algo)
    part = out.with_name(out.name + ".part")
    done = 0
    try:
        with trio.fail_after(timeout) if timeout else contextlib.nullcontext():
            async with httpx.AsyncClient(
                follow_redirects=True, timeout=httpx.Timeout(HTTP_IDLE_TIMEOUT),
                headers={"Accept-Encoding": "identity"},
            ) as client, client.stream("GET", entry.location) as resp:
                if resp.status_code in (404, 410):
                    raise NotFoundError(f"{entry.location}: HTTP {resp.status_code}")
                if not resp.is_success:
                    raise NetworkError(f"{entry.location}: HTTP {resp.status_code}")
                length = resp.headers.get("content-length", "")
                total = int(length) if length.isdigit() else None
                with open(part, "wb") as f:
                    async for chunk in resp.aiter_bytes(HTTP_CHUNK):
                        # hashing and writing off the event loop (hashlib releases the GIL)
                        await trio.to_thread.run_sync(_write_hash, f, h, chunk)
                        done += len(chunk)
                        if hooks is not None:
                            hooks.advance(entry, done, total)
                os.replace(part, out)
    except trio.TooSlowError:
        raise FetchTimeout(f"{entry.location}: no result within {timeout} s") from None
    except httpx.TimeoutException as exc:
        raise FetchTimeout(f"{entry.location}: timed out ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise NetworkError(f"{entry.location}: {exc or type(exc).__name__}") from None
    except OSError as exc:
        raise InputError(f"cache: cannot write {part}: {exc.strerror or exc}") from None
    finally:
        part.unlink(missing_ok=True)
    return f"{algo}:{h.hexdigest()}"


def _write_hash(f: Any, h: Any, chunk: bytes) -> None:
    f.write(chunk)
    h.update(chunk)


async def _one(
    entry: Entry, cache: LimaCache, *, gateways: list[str], fallback: bool,
    timeout: float | None, hooks: ProgressHooks | None,
) -> Outcome:
    if await trio.to_thread.run_sync(_cached, cache, entry):
        size = (cache.entry_dir(entry.location) / "data").stat().st_size
        return Outcome(entry, "cached", "cache", size)
    if entry.cid is None and not fallback:
        return Outcome(entry, "skipped: no cid", "-")
    if entry.cid is None and entry.digest is None:
        return Outcome(entry, "skipped: no cid, no digest", "-")
    started = time.monotonic()
    try:
        stage = cache.begin(entry.location)
    except CargetError as exc:
        return _failed(entry, exc, started)
    out = stage / "data"
    if hooks is not None:
        hooks.start(entry, None)
    try:
        if entry.cid is not None:
            source, got = await _fetch_cid(
                entry, out, gateways=gateways, fallback=fallback, timeout=timeout, hooks=hooks
            )
        else:
            source, got = "location", await _fetch_location(
                entry, out, timeout=timeout, hooks=hooks
            )
        algo = entry.digest.partition(":")[0] if entry.digest else "sha256"
        if got is None or not got.startswith(f"{algo}:"):
            # the fetcher checked the CID; compute the digest lima records ourselves
            got = await trio.to_thread.run_sync(_file_digest, out, algo)
        if entry.digest is not None and got != entry.digest:
            raise DigestMismatch(f"{entry.location}: got {got}, the template says {entry.digest}")
        await trio.to_thread.run_sync(cache.commit, entry.location, entry.digest or got)
    except (DigestMismatch, VerificationError, UsageError) as exc:
        # bytes that failed their check, or are not a file, must not be resumed from:
        # start clean next time
        cache.discard(entry.location)
        return _failed(entry, exc, started)
    except CargetError as exc:
        # a network failure keeps the fetcher's partial file and journal for the next run
        # to resume from; a staging dir with nothing in it is removed
        if not any(stage.iterdir()):
            cache.discard(entry.location)
        return _failed(entry, exc, started)
    finally:
        if hooks is not None:
            hooks.finish(entry)
    size = os.stat(cache.entry_dir(entry.location) / "data").st_size
    return Outcome(entry, "fetched", source, size, time.monotonic() - started)


def _failed(entry: Entry, exc: CargetError, started: float) -> Outcome:
    return Outcome(entry, f"failed: {exc}", "-", None, time.monotonic() - started, exc)


async def prefetch(
    template: Template | Composed,
    cache: LimaCache,
    *,
    arch: str,
    variant: str | None = None,
    gateways: list[str],
    fallback: bool = False,
    timeout: float | None = None,
    hooks: ProgressHooks | None = None,
) -> list[Outcome]:
    """Prefetch ``template``'s entries for ``arch`` into ``cache``; outcomes in file order.

    Raises (before fetching or writing anything) :class:`InputError` for an entry whose
    location is not http(s), a location given two digests, or a cache dir that cannot be
    written. Per-entry failures are reported in the outcomes, not raised; see
    :func:`exit_error`.
    """
    entries = plan_prefetch(template, arch, variant)
    digests = location_digests(template)
    await trio.to_thread.run_sync(cache.check_writable)
    outcomes: list[Outcome | None] = [None] * len(entries)
    limiter = trio.CapacityLimiter(CONCURRENT_ENTRIES)
    # entries with the same location share one cache entry: fetch it once, by the first
    # of them that has a cid, checked by the digest any of them gives
    first: dict[str, int] = {}
    for i, entry in enumerate(entries):
        j = first.setdefault(entry.location, i)
        if entries[j].cid is None and entry.cid is not None:
            first[entry.location] = i

    async def run(i: int, entry: Entry) -> None:
        async with limiter:
            outcomes[i] = await _one(entry, cache, gateways=gateways, fallback=fallback,
                                     timeout=timeout, hooks=hooks)

    async with trio.open_nursery() as nursery:
        for location, i in first.items():
            entry = dataclasses.replace(entries[i], digest=digests.get(location))
            nursery.start_soon(run, i, entry)
    for i, entry in enumerate(entries):
        if outcomes[i] is None:
            twin = outcomes[first[entry.location]]
            assert twin is not None
            # within one file its YAML path is enough; across files, name the file too
            same = twin.entry.where if twin.entry.source == entry.source else twin.entry.at
            outcomes[i] = Outcome(entry, f"same location as {same}: {twin.result}",
                                  twin.source, twin.size, 0.0, None)
    cache.tidy()
    return [o for o in outcomes if o is not None]


def exit_error(outcomes: list[Outcome]) -> CargetError | None:
    """The error the command exits with: the first failed entry's, named by the entry
    (a wrong digest is :class:`DigestMismatch`, exit 5), or None when all went well."""
    for o in outcomes:
        if o.error is not None:
            exc = o.error
            message = f"{o.entry.at} ({o.entry.name}): {exc}"
            try:
                return type(exc)(message)
            except TypeError:
                return exc
    return None
