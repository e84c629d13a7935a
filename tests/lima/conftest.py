"""The lima tests' fixtures live in limafixtures.py (importable by the tests by name)."""

from limafixtures import site, static_server

__all__ = ["site", "static_server"]
