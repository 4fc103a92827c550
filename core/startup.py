"""Start-up checks shared by `stt serve`, `stt migrate` and `python -m worker`: unwritable
storage or an unreachable database ends the process with one clear line on stderr (and a
non-zero status), never a traceback."""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from core.db import make_engine
from core.errors import ConfigError
from core.migrate import upgrade
from core.settings import Settings

EXIT_STATUS = 3
"""What a process that cannot start exits with."""


class CannotStart(Exception):
    """What stops the process from starting, in words."""


def shown_url(url: str) -> str:
    """The database URL without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(an unparseable DATABASE_URL)"


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


def check_writable(folder: Path, what: str) -> None:
    """`folder` exists (made if need be) and takes a file; else CannotStart."""
    probe = folder / f".write-check-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CannotStart(f"{what} {folder} is not writable: {reason}") from exc


def check_storage(settings: Settings) -> None:
    """The data directory (SQLite, scratch) and local audio storage take writes."""
    check_writable(settings.storage.data_dir, "the data directory")
    check_writable(settings.storage.scratch_dir, "the scratch directory")
    url = settings.storage.url
    if not (url and url.startswith("s3://")):
        local = Path(url.removeprefix("file://")) if url else settings.storage.audio_dir
        check_writable(local, "audio storage")


def check_database(url: str) -> None:
    """One round trip to the database; else CannotStart."""
    try:
        engine = make_engine(url)
    except (ArgumentError, NoSuchModuleError, OSError) as exc:
        raise CannotStart(f"DATABASE_URL {shown_url(url)} is not usable: {exc}") from exc
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (DBAPIError, PoolTimeout, OSError) as exc:
        raise CannotStart(
            f"the database {shown_url(url)} is unreachable: {_first_line(exc)}"
        ) from exc
    finally:
        engine.dispose()


def migrate(url: str) -> None:
    """Check the database, then upgrade it to the latest schema; else CannotStart."""
    check_database(url)
    try:
        upgrade(url)
    except (DBAPIError, PoolTimeout, OSError) as exc:
        raise CannotStart(
            f"the database {shown_url(url)} could not be migrated: {_first_line(exc)}"
        ) from exc


@contextlib.contextmanager
def fatal_start_errors(program: str) -> Iterator[None]:
    """Turn CannotStart (and a bad setting) into one line on stderr and exit non-zero."""
    try:
        yield
    except (CannotStart, ConfigError) as exc:
        print(f"{program}: cannot start: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_STATUS)
