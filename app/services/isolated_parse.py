"""Parsing in a child process with memory, CPU and wall-clock limits.

A hostile or broken document (a DOCX whose XML inflates to hundreds of MB, a PDF that
sends pypdf into a loop) must not take the app process down with it. Each document is
parsed in a fresh child (forked by a small fork server, so it costs milliseconds, not
an interpreter start) that first limits itself with ``resource.setrlimit``:

* address space: what the child already maps plus PARSE_MEMORY_MB;
* CPU time: PARSE_CPU_SECONDS (the kernel stops it past that);
* and the parent kills it after PARSE_TIMEOUT_SECONDS of wall-clock time.

The result (a ``ParsedDocument``) comes back through a pipe; ``ParseError`` too. A
child that runs out of memory or time, or dies, becomes a ``ParseError`` that says so.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
from multiprocessing.connection import Connection
from pathlib import Path

from app.services.parsing import DocumentKind, ParsedDocument, ParseError, parse_file

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(["app.services.parsing"])


def _address_space_in_use() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _child(
    connection: Connection, path: str, kind: str, memory_bytes: int, cpu_seconds: int
) -> None:
    limit = _address_space_in_use() + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    try:
        result: object = parse_file(Path(path), DocumentKind(kind))
    except ParseError as error:
        result = error
    except MemoryError:
        result = "memory"
    connection.send(result)
    connection.close()


def _run(path: Path, kind: DocumentKind, memory_mb: int, cpu_seconds: int, timeout: float):
    receiver, sender = _context.Pipe(duplex=False)
    process = _context.Process(
        target=_child,
        args=(sender, str(path), kind.value, memory_mb * 1024 * 1024, cpu_seconds),
        daemon=True,
    )
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            return "timeout"
        try:
            return receiver.recv()
        except EOFError:  # the child died without an answer (killed by a limit)
            return "died"
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
        receiver.close()


async def parse_file_isolated(
    path: Path, kind: DocumentKind, *, memory_mb: int, cpu_seconds: int, timeout_seconds: float
) -> ParsedDocument:
    """``parse_file`` in a limited child process; ParseError for what it cannot read."""
    result = await asyncio.to_thread(_run, path, kind, memory_mb, cpu_seconds, timeout_seconds)
    if isinstance(result, ParsedDocument):
        return result
    if isinstance(result, ParseError):
        raise result
    reasons = {
        "memory": f"needs more than {memory_mb} MB of memory (PARSE_MEMORY_MB)",
        "timeout": f"took longer than {timeout_seconds:g} s (PARSE_TIMEOUT_SECONDS)",
        "died": "stopped the reader (out of memory or over PARSE_CPU_SECONDS of CPU)",
    }
    raise ParseError(f"Reading this file {reasons[str(result)]}; it may be malformed or too large.")


def stop_helper_processes() -> None:
    """Stop the fork server and multiprocessing's resource tracker at shutdown.

    They would end on their own once this process has exited, but systemd kills what is
    left in the unit at that moment and, where it is not told the group is empty (seen in
    containers), waits out TimeoutStopSec and marks the unit failed: a blue-green drain
    then took minutes. Stopped here, the app's own process is the unit's last.
    Both ``_stop`` methods are what CPython's own tests use; they do nothing when the
    helper never started.
    """
    from multiprocessing import forkserver, resource_tracker

    forkserver._forkserver._stop()
    resource_tracker._resource_tracker._stop()
