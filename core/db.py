"""Engines and session factories. Sync for the worker and tools, async for the API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


T = TypeVar("T")

CONNECT_TIMEOUT_S = 5
"""A database that does not answer is reported (503) rather than waited on."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


_DRIVERS = {
    False: {"postgresql": "postgresql+psycopg", "sqlite": "sqlite"},
    True: {"postgresql": "postgresql+psycopg", "sqlite": "sqlite+aiosqlite"},
}
"""The drivers this project ships: psycopg 3 (sync and async), sqlite3 and aiosqlite."""


def _with_driver(url: str, *, asynchronous: bool) -> str:
    parsed = make_url(url)
    driver = _DRIVERS[asynchronous].get(parsed.get_backend_name())
    if driver is not None:
        parsed = parsed.set(drivername=driver)
    return parsed.render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    return _with_driver(url, asynchronous=False)


def async_url(url: str) -> str:
    return _with_driver(url, asynchronous=True)


def _is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    # WAL lets the API read while a worker writes; busy_timeout waits out short locks.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _ensure_sqlite_dir(url: str) -> None:
    database = make_url(url).database
    if _is_sqlite(url) and database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str) -> Engine:
    _ensure_sqlite_dir(url)
    kwargs: dict[str, object] = {"pool_pre_ping": not _is_sqlite(url)}  # a file loses no link
    if _is_sqlite(url):
        kwargs["connect_args"] = {"timeout": 10, "check_same_thread": False}
    else:
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    engine = create_engine(sync_url(url), **kwargs)
    if _is_sqlite(url):
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def make_async_engine(url: str) -> AsyncEngine:
    _ensure_sqlite_dir(url)
    kwargs: dict[str, object] = {"pool_pre_ping": True}
    if _is_sqlite(url):
        # A file has no connection to lose; the ping was a second trip through aiosqlite's
        # thread on every checkout (every poll).
        kwargs["pool_pre_ping"] = False
        kwargs["connect_args"] = {"timeout": 10}
    else:
        kwargs.update(
            pool_size=10,
            max_overflow=20,
            pool_timeout=30,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
        )
    engine = create_async_engine(async_url(url), **kwargs)
    if _is_sqlite(url):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def make_read_engine(url: str) -> AsyncEngine | None:
    """For the poll path's reads on Postgres (None on SQLite, read on the event loop): its own
    small pool in autocommit, and no pre-ping, so a poll is one round trip, not four (the
    ping, BEGIN, the query, ROLLBACK). A connection the server dropped (a restart) is found
    by the read itself: the pool is invalidated and the caller retries once
    (:func:`retry_once_if_disconnected`)."""
    if _is_sqlite(url):
        return None
    return create_async_engine(
        async_url(url),
        pool_pre_ping=False,
        isolation_level="AUTOCOMMIT",
        pool_reset_on_return=None,  # nothing to roll back in autocommit
        pool_size=5,
        max_overflow=10,
        pool_timeout=30,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )


async def retry_once_if_disconnected(read: Callable[[], Awaitable[T]]) -> T:
    """`read()`, and once more if it failed on a connection the database had dropped
    (SQLAlchemy's "pessimistic" pre-ping traded for this "optimistic" handling). Only for
    reads: nothing was written that a second try could repeat."""
    try:
        return await read()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    return await read()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def async_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on error."""
    with factory() as session, session.begin():
        yield session
