"""What one run of the source shares across its tables.

- The listings several tables read (rooms, sessions, live sessions, templates) are fetched once
  per run and read by each table as pages arrive (`SharedListing`), so the sessions table, the
  events and the recordings never page the same listing twice.
- Children (peers, settings, destinations, events, recordings by session) are fetched on
  thread pools that each table opens and closes itself, and a run-wide bound keeps at most
  `workers` of them in flight. Listings are not held behind that bound: they are the chains
  every other request waits on.
- The tables run side by side (dlt's parallelized resources), so independent listings page at
  the same time and children start while their listing still pages.

The source is built anew for every run, so nothing here outlives one.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import dlt

from analytics_assets.source.client import AnalyticsApiClient, ListPage
from analytics_assets.source.cursors import SessionCursor, format_time

logger = logging.getLogger(__name__)

#: How far this machine's clock may run ahead of the API's, where the API does not say its time.
LOCAL_CLOCK_ALLOWANCE = timedelta(minutes=5)

T = TypeVar("T")
R = TypeVar("R")

#: Events per room in the warehouse, each room over its own window:
#: `({room_id: since}) -> {room_id: count}`. The source cannot see the warehouse; the daily
#: reconciliation needs it to tell which rooms fell short.
EventCounts = Callable[[Mapping[str, datetime]], Mapping[str, int]]

#: The tables that read the session listing, and so decide where it starts.
SESSION_READERS = ("sessions", "analytics_events", "recordings")


@dataclass(frozen=True)
class RunSettings:
    """How this run reads the API."""

    #: The tables this run loads: only their cursors decide where shared listings start.
    tables: frozenset[str]
    #: Ignore every cursor and read everything (bounded by `start_date`).
    full_refresh: bool
    #: The daily sweep: rooms and recordings in full, events reconciled room by room.
    sweep: bool
    #: Incremental listings re-read this long before their cursors.
    margin: timedelta
    #: Sessions that ended this recently are read again for late events.
    lookback: timedelta
    #: How long the API keeps events.
    retention: timedelta
    #: The earliest creation time a first load or full refresh reads; None for everything.
    start_date: datetime | None
    event_counts: EventCounts | None = None
    #: Table -> the state it starts from when it has none of its own (a job's first run takes
    #: over the cursors of the pipeline that loaded the warehouse before).
    inherited_state: Mapping[str, Mapping[str, Any]] | None = None


class SharedListing:
    """One listing, fetched once and read by several tables, each from its first page, as the
    pages arrive. An error ends every reader's iteration with that error, never a short list."""

    def __init__(self, fetch: Callable[[], Iterator[ListPage]]) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._pages: list[ListPage] = []
        self._source: Iterator[ListPage] | None = None
        self._done = False
        self._error: BaseException | None = None
        #: This machine's clock when the first page was asked for.
        self.local_start: datetime | None = None

    @property
    def started_at(self) -> datetime | None:
        """The API's clock when it served the listing's first page (None before that)."""
        with self._lock:
            return self._pages[0].served_at if self._pages else None

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        for page in self.pages():
            yield page.items

    def pages(self) -> Iterator[ListPage]:
        index = 0
        while True:
            with self._lock:
                if index >= len(self._pages):
                    if self._error is not None:
                        raise self._error
                    if self._done:
                        return
                    try:
                        if self._source is None:
                            self.local_start = datetime.now(UTC)
                            self._source = self._fetch()
                        self._pages.append(next(self._source))
                    except StopIteration:
                        self._done = True
                        return
                    except BaseException as exc:
                        self._error = exc
                        raise
                page = self._pages[index]
            index += 1
            yield page


class Run:
    """The client, the settings and the shared listings of one run."""

    def __init__(self, client: AnalyticsApiClient, settings: RunSettings) -> None:
        self.client = client
        self.settings = settings
        self._slots = threading.BoundedSemaphore(client.workers)
        self._lock = threading.Lock()
        self._listings: dict[tuple[str, tuple[tuple[str, str], ...]], SharedListing] = {}
        self._session_after: str | None = None
        self._session_after_known = False

    def state(self, table: str) -> dict[str, Any]:
        """The table's dlt state (stored in the warehouse with the data it describes)."""
        state = dlt.current.resource_state(table)
        inherited = (self.settings.inherited_state or {}).get(table)
        if not state and inherited:
            state.update(copy.deepcopy(dict(inherited)))
        return state

    # ---- listings ------------------------------------------------------------------------
    def listing(self, path: str, params: Mapping[str, str] | None = None) -> SharedListing:
        """The run's one copy of a `limit`/`start`/`last` listing."""
        frozen = tuple(sorted((params or {}).items()))
        with self._lock:
            if (path, frozen) not in self._listings:
                self._listings[(path, frozen)] = SharedListing(
                    lambda: self.client.list_pages(path, dict(frozen))
                )
            return self._listings[(path, frozen)]

    def rooms(self, since: datetime | None) -> Iterator[list[dict[str, Any]]]:
        """Rooms created since `since` (all when None), the disabled ones included.

        The reference says the `enabled` filter defaults to true: a listing without it may hold
        only the enabled rooms. A second listing with `enabled=false` brings the disabled ones
        under either reading (those already listed are not repeated).
        """
        seen: set[str] = set()
        for listing in self._room_listings(since):
            for page in listing:
                fresh = [room for room in page if room["id"] not in seen]
                seen.update(room["id"] for room in fresh)
                if fresh:
                    yield fresh

    def rooms_started_at(self, since: datetime | None) -> datetime | None:
        """The API's clock when the room listing from `since` began."""
        return self._room_listings(since)[0].started_at

    def _room_listings(self, since: datetime | None) -> tuple[SharedListing, SharedListing]:
        after = {"after": format_time(since)} if since else {}
        disabled = {**after, "enabled": "false"}
        return self.listing("/v2/rooms", after), self.listing("/v2/rooms", disabled)

    def sessions(self) -> Iterator[list[dict[str, Any]]]:
        """The session listing of this run, from where the tables that read it need it: the
        oldest of their resume points, or everything (since `start_date`) when one of them has
        no cursor yet or the run is a full refresh.

        Sessions' `active` filter says "Default: true" as rooms' `enabled` does (though its
        sample lists ended sessions): a listing without it may hold the live sessions only. So
        the live and the ended sessions are listed apart, `active=true` then `active=false`,
        complete under either reading. A session that ended between the two listings comes
        twice, live then ended: the sessions table loads it once, as ended.
        """
        for listing in self._session_listings():
            yield from listing

    def sessions_started_at(self) -> datetime | None:
        """The API's clock when this run's session listing began (its live sessions' first
        page): a cursor committed past it could skip a session that started while it paged.
        An answer without a `Date` header (a proxy that drops it) leaves this machine's clock
        when the listing began, less `LOCAL_CLOCK_ALLOWANCE` for the two clocks' difference."""
        listing = self._session_listings()[0]
        if listing.started_at is not None or listing.local_start is None:
            return listing.started_at
        logger.warning(
            "the API's answers carry no Date header: session cursors are bounded by this "
            "machine's clock less %s",
            LOCAL_CLOCK_ALLOWANCE,
        )
        return listing.local_start - LOCAL_CLOCK_ALLOWANCE

    def _session_listings(self) -> tuple[SharedListing, SharedListing]:
        with self._lock:
            if not self._session_after_known:
                self._session_after = self._session_listing_start()
                self._session_after_known = True
        after = {"after": self._session_after} if self._session_after else {}
        return tuple(  # type: ignore[return-value]
            self.listing("/v2/sessions", {**after, "active": active})
            for active in ("true", "false")
        )

    def _session_listing_start(self) -> str | None:
        settings = self.settings
        everything = format_time(settings.start_date) if settings.start_date else None
        readers = [name for name in SESSION_READERS if name in settings.tables]
        if settings.sweep:
            readers = [name for name in readers if name == "sessions"]
        cursors = [SessionCursor.from_state(self.state(name)) for name in readers]
        if settings.full_refresh or not cursors or any(c is None for c in cursors):
            return everything
        start = min(c.resume_after(settings.margin) for c in cursors if c is not None)
        return format_time(start)

    # ---- children ------------------------------------------------------------------------
    def fan_out(self, fetch: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """`fetch(item)` for each item, as the items arrive, on a pool this call opens and
        always closes; at most `workers` requests of the run in flight. Yields what each fetch
        returns, in the order they complete."""
        workers = self.client.workers

        def slotted(item: T) -> R:
            with self._slots:
                return fetch(item)

        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="analytics_api")
        pending: set[Future[R]] = set()
        try:
            for item in items:
                pending.add(pool.submit(slotted, item))
                done = {f for f in pending if f.done()}
                while len(pending) - len(done) >= 4 * workers:  # bound what waits in memory
                    done |= wait(pending - done, return_when=FIRST_COMPLETED).done
                for future in done:
                    pending.discard(future)
                    yield future.result()
            while pending:
                done = wait(pending, return_when=FIRST_COMPLETED).done
                for future in done:
                    pending.discard(future)
                    yield future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def now(self) -> datetime | None:
        """The API's clock (its `Date` header), once it has answered."""
        return self.client.now()
