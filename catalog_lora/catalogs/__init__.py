"""Catalogs in and out: catalog files read as a stream of chunks (CSV, TSV, JSONL, Parquet, xlsx),
predictions for a table of rows, an output written chunk by chunk and resumable, the Space's batch
run in the background.

Imports from the core: ``inference``, ``runs``.
"""
