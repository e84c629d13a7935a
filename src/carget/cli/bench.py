"""``carget bench``: each stage's throughput against hashlib's SHA-256, in one run."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from ..errors import InputError, UsageError

if TYPE_CHECKING:
    from ..bench import BenchReport

__all__ = ["bench", "plot_report"]


def _need_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(
            "--plot needs matplotlib, which is not installed: pip install 'carget[plot]'"
        ) from None


def plot_report(report: BenchReport, out: str) -> None:
    """Draw the stages as a horizontal bar chart (MB/s, ratio on each bar) into ``out``.

    Raises :class:`UsageError` when matplotlib is missing, :class:`InputError` when the
    file cannot be written.
    """
    _need_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    names = [s.name for s in report.stages]
    rates = [s.mbps for s in report.stages]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(names) + 1.5))
    bars = ax.barh(names[::-1], rates[::-1], color="#4c72b0")
    for bar, stage in zip(bars, report.stages[::-1], strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                f" {stage.mbps:.0f} MB/s ({stage.ratio:.2f}x)", va="center")
    ax.axvline(report.sha256_mbps, color="#c44e52", linestyle="--", label="hashlib SHA-256")
    ax.set_xlabel("MB/s")
    ax.set_xlim(0, max(rates) * 1.35)
    ax.set_title(f"carget bench: {report.size / 2**20:.0f} MiB, {report.cpu_count} cores")
    ax.legend(loc="lower right")
    fig.tight_layout()
    try:
        fig.savefig(out)
    except OSError as exc:
        raise InputError(f"{out}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


@click.command()
@click.option("--size", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="MiB", help="Sample size in MiB (default 256).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), default=None,
              metavar="OUT.png", help="Also draw a bar chart (needs carget[plot]).")
def bench(size: float | None, as_json: bool, plot_out: str | None) -> None:
    """Measure add, car verify and loopback fetch against hashlib's SHA-256.

    Every figure is MB/s of file bytes and its ratio to SHA-256 over the same bytes in the
    same run (absolute speeds drift on a shared machine; ratios much less).
    """
    from rich.console import Console
    from rich.table import Table

    from ..bench import DEFAULT_SIZE_MIB, Stage, run_bench

    if plot_out is not None:
        _need_matplotlib()  # fail before spending a minute measuring
    nbytes = max(1, int((size if size is not None else DEFAULT_SIZE_MIB) * 2**20))
    console = Console(stderr=True, highlight=False)
    # on a terminal the table says it all: each stage shows on one transient status line
    # (printing the stages as well showed every result twice); to a file or a pipe, a
    # line a stage so a log shows where a long run is
    status = console.status("carget bench") if console.is_terminal and not as_json else None

    def on_stage(stage: Stage) -> None:
        if status is not None:
            status.update(f"carget bench: {stage.name}: {stage.mbps:.0f} MB/s")
        elif not as_json:
            console.print(f"  {stage.name}: {stage.mbps:.0f} MB/s", style="dim")

    if status is None and not as_json:
        console.print(f"carget bench: {nbytes / 2**20:g} MiB sample")
    if status is not None:
        with status:
            report = run_bench(nbytes, on_stage=on_stage)
    else:
        report = run_bench(nbytes, on_stage=on_stage)
    if as_json:
        sys.stdout.write(json.dumps(report.as_json(), indent=2) + "\n")
    else:
        table = Table(title=f"carget bench ({nbytes / 2**20:g} MiB, {report.cpu_count} cores, "
                            f"Python {report.python})", title_justify="left")
        table.add_column("stage")
        table.add_column("MB/s", justify="right")
        table.add_column("x SHA-256", justify="right")
        table.add_column("seconds", justify="right")
        for s in report.stages:
            table.add_row(s.name, f"{s.mbps:.0f}", f"{s.ratio:.2f}", f"{s.seconds:.3f}")
        Console(highlight=False).print(table)
    if plot_out is not None:
        plot_report(report, plot_out)
        if not as_json:
            console.print(f"chart written to {plot_out}")
