"""Ingestion: turning queued documents into searchable chunks, in the background.

``pipeline``: one document, parse -> chunk -> embed -> store (``process_document``).
``worker``: ``IngestWorker`` claims queued documents (advisory locks) and runs the
pipeline on them, INGEST_CONCURRENCY at a time. docs/ARCHITECTURE.md explains the
states, the locks and what happens after a crash.
"""
