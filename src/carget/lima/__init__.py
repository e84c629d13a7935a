"""lima support: read templates, compute and write ``cid:`` lines, fill lima's cache.

:mod:`.template` parses one template file, :mod:`.compose` follows its ``base:`` templates
as lima 2 does (:mod:`.locate` finds lima's templates directories and default base),
:mod:`.edit` inserts lines without disturbing the rest,
:mod:`.annotate` computes CIDs and digests, :mod:`.cache` is lima's download cache layout,
:mod:`.prefetch` fetches entries by CID into that cache (the only module here using trio).
"""

from __future__ import annotations

from .cache import LimaCache, cache_key, default_cache_dir
from .compose import Composed, Part, compose
from .edit import Annotation, annotate_text
from .template import LIMA_ARCHES, Entry, Template, host_arch, load_template, parse_template

__all__ = [
    "LIMA_ARCHES",
    "Annotation",
    "Composed",
    "Entry",
    "LimaCache",
    "Part",
    "Template",
    "annotate_text",
    "cache_key",
    "compose",
    "default_cache_dir",
    "host_arch",
    "load_template",
    "parse_template",
]
