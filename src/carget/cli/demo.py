"""``carget demo``: the whole loop offline, in one command (the README's first command).

Makes a sample file, computes its CID, serves it with ``carget serve`` on 127.0.0.1 (in
this process, an ephemeral port), fetches it back through the verified fetcher with a
progress bar, checks the digest and the bytes, says how fast each step ran against
hashlib's SHA-256 of the same bytes, and removes everything it made.
"""

from __future__ import annotations

import filecmp
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from ..errors import VerificationError

__all__ = ["demo"]

#: big enough to show real throughput, small enough to take a few seconds
DEFAULT_SIZE_MIB = 64


@click.command()
@click.option("--size", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_SIZE_MIB,
              show_default=True, metavar="MiB", help="Size of the sample file.")
def demo(size: float) -> None:
    """Import, serve on loopback, fetch back verified, and report: all offline."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    from ..add import add_file
    from ..bench import MB, lima_options, make_sample, sha256_file
    from ..fetcher import fetch_file_sync
    from ..lima.prefetch import event_bytes
    from ..server.testing import running_gateway

    out = Console(highlight=False, soft_wrap=True)
    nbytes = max(1, int(size * 2**20))
    mib = nbytes / 2**20

    def rate(seconds: float) -> str:
        return f"{nbytes / seconds / MB:,.0f} MB/s" if seconds > 0 else "-"

    out.print("[bold]carget demo[/bold]: import, serve, fetch and verify, all on 127.0.0.1")
    with tempfile.TemporaryDirectory(prefix="carget-demo-") as tmp:
        d = Path(tmp)
        sample = d / "sample.bin"
        make_sample(sample, nbytes)
        out.print(f"1. made a {mib:g} MiB sample file (deterministic bytes): {sample}")

        digest, t_sha = sha256_file(sample)
        _, t_sha2 = sha256_file(sample)
        t_sha = min(t_sha, t_sha2)
        started = time.perf_counter()
        added = add_file(sample, lima_options(), digest="sha256")
        t_add = time.perf_counter() - started
        out.print(f"2. its CID (as `ipfs add --cid-version=1`): [bold]{added.cid}[/bold]")
        out.print(f"   and sha256, in the same pass: {added.digest} ({t_add:.2f} s, {rate(t_add)})")

        with running_gateway([sample], cid_version=1) as url:
            out.print(f"3. serving it with carget serve at {url}/ipfs/{added.cid}")
            fetched = d / "fetched.bin"
            progress = Progress(TextColumn("   fetching"), BarColumn(), DownloadColumn(),
                                TransferSpeedColumn(), console=out, transient=True,
                                disable=not out.is_terminal)
            task = progress.add_task("fetch", total=nbytes)

            def on_event(event: dict[str, Any]) -> None:
                done, _ = event_bytes(event)
                if done is not None:
                    progress.update(task, completed=done)

            with progress:
                started = time.perf_counter()
                res = fetch_file_sync(f"ipfs://{added.cid}", fetched, gateways=[url],
                                      digest=digest, progress=on_event)
                t_fetch = time.perf_counter() - started
        out.print(f"4. fetched ipfs://{added.cid} back from that gateway: every block's hash "
                  f"checked as it streamed in, then the file's sha256 "
                  f"({t_fetch:.2f} s, {rate(t_fetch)}, source: {res.source})")
        if res.digest not in (None, digest) or not filecmp.cmp(sample, fetched, shallow=False):
            raise VerificationError("the fetched file differs from the sample")
        out.print(f"5. digest matches ({digest[:23]}...) and the bytes are identical")
        out.print(
            f"\nhashlib SHA-256 of the same bytes: {rate(t_sha)} (one core). "
            f"add ran at {t_sha / t_add:.2f}x that, the verified fetch at "
            f"{t_sha / t_fetch:.2f}x."
        )
    out.print("cleaned up: nothing left behind.")
