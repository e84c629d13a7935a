"""``python -m carget`` and the installed ``carget`` command both start here."""

from __future__ import annotations

import gc


def main() -> None:
    # Start-up makes ~100k long-lived objects (click, trio and carget's modules); at the
    # default threshold (700 allocations) the cyclic collector walks them over and over,
    # ~10 ms of a ~0.1 s start (python -c 'import trio, carget.fetcher.get, ...', with
    # and without). Collecting young objects every 100k allocations still bounds garbage.
    gc.set_threshold(100_000, 20, 20)
    from carget.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
