"""Runs that write the same tables take turns.

On DuckDB, which takes one writer at a time, a lock file beside the database serializes every
run touching it; on Postgres, a session advisory lock per table serializes only the runs that
share a table, so jobs on different tables load at the same time. The advisory locks live on a
connection of their own, held for the whole block and closed at its end (which releases them,
even if the process dies): never on a connection the block also uses, whose client may be
entered again (dlt's SQL clients open a new connection on every `__enter__` and drop the old
one, and Postgres releases session locks with it: TRAPS).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from analytics_assets.source.settings import DATASET_NAME

logger = logging.getLogger(__name__)

#: Held by a run that may create the dataset, the staging dataset or dlt's own tables: two
#: first loads at the same time would race on `CREATE SCHEMA` and `CREATE TABLE _dlt_...`.
SETUP_LOCK = "(dataset setup)"


@contextmanager
def file_lock(db: Path, timeout: float) -> Iterator[None]:
    """Hold the DuckDB file for the block: other processes wait (saying so), this process's
    threads share it (a step that holds the warehouse may open more connections)."""
    from filelock import FileLock, Timeout

    db.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(db) + ".lock", is_singleton=True, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.warning("Waiting for another run to finish with %s (DuckDB takes one writer)", db)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise TimeoutError(
                f"Another run held {db} for more than {timeout:.0f} s; gave up waiting "
                "(nothing was written)"
            ) from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def advisory_locks(
    connect: Callable[[], Any],
    tables: Sequence[str],
    timeout: float,
    *,
    poll_seconds: float = 0.5,
) -> Iterator[None]:
    """Postgres session advisory locks, one per table, taken in one order (no deadlock) on a
    connection opened for this block alone (`connect()` gives a new dlt SQL client)."""
    with connect() as client:
        names = sorted(set(tables))
        if not _set_up(client):
            names = [SETUP_LOCK, *names]
        for table in names:
            _take(client, table, timeout, poll_seconds)
        yield


def _take(client: Any, table: str, timeout: float, poll_seconds: float) -> None:
    key = lock_key(f"{DATASET_NAME}.{table}")
    deadline = time.monotonic() + timeout
    waiting = False
    while not _try_lock(client, key):
        if not waiting:
            logger.warning("Waiting for another run writing %s.%s", DATASET_NAME, table)
            waiting = True
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"Another run kept writing {DATASET_NAME}.{table} for more than "
                f"{timeout:.0f} s; gave up waiting (nothing was written)"
            )
        time.sleep(poll_seconds)


def _set_up(client: Any) -> bool:
    """Whether the dataset, its staging dataset and dlt's tables exist already."""
    schemas = f"'{client.dataset_name}', '{client.dataset_name}_staging'"
    with client.execute_query(
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name IN (" + schemas + ")"
    ) as cursor:
        both = cursor.fetchone()[0] == 2
    if not both:
        return False
    with client.execute_query(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = %s AND table_name = '_dlt_version'",
        client.dataset_name,
    ) as cursor:
        return bool(cursor.fetchone()[0])


def _try_lock(client: Any, key: int) -> bool:
    with client.execute_query("SELECT pg_try_advisory_lock(%s)", key) as cursor:
        return bool(cursor.fetchone()[0])


def lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big", signed=True)
