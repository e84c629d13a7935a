"""UnixFS, sans-IO: dag-pb and UnixFS codecs, chunking, layouts, builders and the exporter.

Never imports trio, httpx, click or rich (a test enforces it).
"""
