"""``carget car``: create, ls, roots, verify, inspect and extract CAR files (go-car's
``car`` tool as the model). Exit codes follow :mod:`carget.errors` (4: bad or missing
block, malformed CAR, unsafe path)."""

from __future__ import annotations

import os
import sys
from collections import Counter

import click

from ..cid import CID, DAG_CBOR, DAG_PB, Block
from ..errors import IncompleteDAG, InputError, UsageError

__all__ = ["car"]

_CAR_IN = click.argument("car_file", metavar="FILE.car|-", default="-")


def _jobs() -> int:
    return os.cpu_count() or 1


@click.group()
def car() -> None:
    """CAR files: create, list, verify, inspect, extract."""


@car.command()
@click.option("-f", "--file", "out", required=True, type=click.Path(dir_okay=False,
              allow_dash=True), help="The CAR to write (- for stdout).")
@click.option("--version", "version", type=click.IntRange(1, 2), default=1,
              help="CAR version: 1 (default) or 2 with a MultihashIndexSorted index.")
@click.option("--cid-version", type=click.IntRange(0, 1), default=1,
              help="CID version of the DAG (default 1, raw leaves, as go-car).")
@click.option("-w", "--wrap-with-directory", "wrap", is_flag=True,
              help="Wrap the paths in one directory (a single root).")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
def create(out: str, version: int, cid_version: int, wrap: bool, paths: tuple[str, ...]) -> None:
    """Import PATHS as UnixFS and write their DAGs to one CAR (one root per path).
    Dot-files are included, as go-car's `car create` includes them."""
    from ..car.writer import open_car_writer
    from ..tree import add_paths
    from ..unixfs.options import resolve_options

    # as go-car's `car create` (go-unixfsnode BuildUnixFSRecursive): every entry, dot-files
    # too, so the roots are go-car's (checked in tests/interop/test_go_car.py)
    opts = resolve_options(cid_version=cid_version, wrap=wrap, hidden=True)
    with open_car_writer(out, version=version) as writer:
        roots = add_paths(list(paths), opts, emit=writer.write_block)
        writer.set_roots(roots)
    if out != "-":
        for root in roots:
            click.echo(str(root))


@car.command()
@_CAR_IN
def roots(car_file: str) -> None:
    """Print the roots named in the CAR header."""
    from ..car.reader import CarReader, open_car_input

    with open_car_input(car_file) as f:
        for root in CarReader(f, verify=False).header.roots:
            click.echo(str(root))


@car.command(name="ls")
@click.option("-v", "--verbose", is_flag=True, help="Also print each block's codec and size.")
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object a block: {"cid": ..., "codec": ..., "size": N}.')
@_CAR_IN
def ls(car_file: str, verbose: bool, as_json: bool) -> None:
    """List the CIDs of the blocks in the CAR (every block is verified on the way)."""
    import json

    from ..car.reader import CarReader, open_car_input

    out = sys.stdout
    with open_car_input(car_file) as f:
        for block in CarReader(f).blocks():
            cid = block.cid
            if as_json:
                out.write(json.dumps({"cid": str(cid), "codec": cid.codec_name,
                                      "size": len(block.data)}) + "\n")
            elif verbose:
                out.write(f"{cid}\t{cid.codec_name}\t{len(block.data)}\n")
            else:
                out.write(f"{cid}\n")
    out.flush()


def _links(block: Block) -> list[CID]:
    """Links of a dag-pb or dag-cbor block; other codecs hold none carget can follow."""
    from ..unixfs.node import block_links

    if block.cid.codec not in (DAG_PB, DAG_CBOR):
        return []
    return block_links(block.cid, block.data)


class _Survey:
    """One pass over a CAR: counts, codecs, and (when asked) the link graph."""

    def __init__(self, car_file: str, follow_links: bool, jobs: int | None = None) -> None:
        from ..car.reader import CarReader, open_car_input

        self.codecs: Counter[str] = Counter()
        self.blocks = 0
        self.block_bytes = 0
        self.present: set[bytes] = set()
        self.links: dict[bytes, list[CID]] = {}
        with open_car_input(car_file) as f:
            reader = CarReader(f, jobs=jobs or _jobs())
            self.header = reader.header
            for block in reader.blocks():
                self.blocks += 1
                self.block_bytes += len(block.data)
                self.codecs[block.cid.codec_name] += 1
                if follow_links:
                    key = block.cid.bytes
                    if key not in self.present:
                        self.present.add(key)
                        self.links[key] = _links(block)
            self.file_bytes = reader.bytes_read

    def missing(self) -> list[CID]:
        """CIDs reachable from the roots whose blocks the CAR lacks (identity CIDs carry
        their block, so they are never missing)."""
        from ..unixfs.node import identity_data

        missing: list[CID] = []
        seen: set[bytes] = set()
        stack = list(self.header.roots)
        while stack:
            cid = stack.pop()
            key = cid.bytes
            if key in seen:
                continue
            seen.add(key)
            inline = identity_data(cid)
            if inline is not None:
                if cid.codec in (DAG_PB, DAG_CBOR):
                    stack.extend(_links(Block(cid, inline)))
                continue
            if key not in self.present:
                missing.append(cid)
                continue
            stack.extend(self.links[key])
        return missing


@car.command()
@click.option("--dag", is_flag=True,
              help="Also check that the DAG under the roots is complete (follows dag-pb "
                   "and dag-cbor links).")
@click.option("-j", "--jobs", type=click.IntRange(1), default=None,
              help="Hashing threads (default: number of CPUs).")
@_CAR_IN
def verify(car_file: str, dag: bool, jobs: int | None) -> None:
    """Check every block's hash (and with --dag that no block the DAG needs is missing).
    Exit 4 when a block is bad or missing."""
    survey = _Survey(car_file, follow_links=dag, jobs=jobs)
    if dag:
        missing = survey.missing()
        if missing:
            shown = ", ".join(str(c) for c in missing[:3])
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise IncompleteDAG(f"DAG incomplete: {len(missing)} block(s) missing: "
                                f"{shown}{more}")
    what = "blocks and DAG" if dag else "blocks"
    click.echo(f"verified {survey.blocks} {what} ({survey.block_bytes} bytes of block data)")


@car.command()
@click.option("--json", "as_json", is_flag=True, help="Print the same facts as one JSON object.")
@_CAR_IN
def inspect(car_file: str, as_json: bool) -> None:
    """Print the version, roots, block count, codec counts, sizes and missing links."""
    survey = _Survey(car_file, follow_links=True)
    h = survey.header
    missing = survey.missing()
    if as_json:
        import json  # only here: ~0.6 ms of every car command's start-up otherwise

        doc: dict[str, object] = {"version": h.version}
        if h.v2 is not None:
            doc |= {"data_offset": h.v2.data_offset, "data_size": h.v2.data_size,
                    "index_offset": h.v2.index_offset}
        doc |= {"roots": [str(r) for r in h.roots], "blocks": survey.blocks,
                "unique_blocks": len(survey.present), "codecs": dict(sorted(
                    survey.codecs.items())), "block_bytes": survey.block_bytes,
                "car_bytes": survey.file_bytes, "missing": [str(c) for c in missing]}
        click.echo(json.dumps(doc))
        return
    click.echo(f"Version: {h.version}")
    if h.v2 is not None:
        click.echo(f"Data offset: {h.v2.data_offset}\nData size: {h.v2.data_size}\n"
                   f"Index offset: {h.v2.index_offset}")
    click.echo(f"Roots: {', '.join(str(r) for r in h.roots) or '(none)'}")
    click.echo(f"Blocks: {survey.blocks}")
    click.echo(f"Unique blocks: {len(survey.present)}")
    click.echo("Codecs: " + ", ".join(f"{name}: {n}" for name, n in sorted(survey.codecs.items())))
    click.echo(f"Block bytes: {survey.block_bytes}")
    click.echo(f"CAR size: {survey.file_bytes} bytes")
    click.echo(f"Missing links: {len(missing)}")
    for cid in missing:
        click.echo(f"  {cid}")


@car.command()
@click.option("-f", "--file", "car_file", default="-", metavar="FILE.car|-",
              help="The CAR to read (default: stdin).")
@click.option("-o", "--output", "out_dir", default=".", type=click.Path(file_okay=False),
              help="Directory to extract into (default: the current directory).")
@click.option("--root", "root_text", default=None, metavar="CID",
              help="Root to extract (default: the CAR's single root).")
@click.argument("path_in_dag", required=False, default="")
def extract(car_file: str, out_dir: str, root_text: str | None, path_in_dag: str) -> None:
    """Write the UnixFS file or directory at PATH-IN-DAG (default: the root) under
    --output. Unsafe names and symlinks leaving the output directory are refused."""
    from ..car.extract import extract_node
    from ..car.reader import open_car_store
    from ..unixfs.exporter import Exporter

    with open_car_store(car_file) as store:
        if root_text is not None:
            root = CID.parse(root_text)
        elif len(store.header.roots) == 1:
            root = store.header.roots[0]
        else:
            raise UsageError(f"the CAR has {len(store.header.roots)} roots: pick one with --root")
        exporter = Exporter(store)
        res = exporter.resolve(root, path_in_dag)
        segs = [s for s in path_in_dag.split("/") if s]
        name = segs[-1] if segs else str(res.cid)
        os.makedirs(out_dir, exist_ok=True)
        if not os.path.isdir(out_dir):
            raise InputError(f"{out_dir} is not a directory")
        count = extract_node(exporter, res.cid, res.node, out_dir, name)
    click.echo(f"extracted {count} {'entry' if count == 1 else 'entries'} to {out_dir}",
               err=True)


