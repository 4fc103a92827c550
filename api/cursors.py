"""Cursors of the job list: made from where a page ended, decoded strictly (anything else
is a 400 before a query is built)."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime

from core.errors import InvalidRequest
from core.models import is_id


def make_cursor(created_at: datetime, job_id: str) -> str:
    """Where a page ended: URL-safe base64 of the JSON pair (created_at, id)."""
    raw = json.dumps([created_at.isoformat(), job_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


MAX_CURSOR = 200
"""A cursor made by :func:`make_cursor` is about 90 characters."""


def parse_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a page ended at; 400 for anything :func:`make_cursor` did not make
    (decoded strictly: URL-safe base64 of a JSON pair of an aware ISO time and a job id)."""
    invalid = InvalidRequest("cursor is not valid", param="cursor")
    if len(cursor) > MAX_CURSOR or not _CURSOR.fullmatch(cursor):
        raise invalid
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        created, job_id = json.loads(raw)
        if not (isinstance(created, str) and isinstance(job_id, str) and is_id(job_id)):
            raise invalid
        when = datetime.fromisoformat(created)
    except (ValueError, TypeError) as exc:
        raise invalid from exc
    if when.tzinfo is None or when.isoformat() != created:  # exactly what cursor_of wrote
        raise invalid
    return when, job_id


_CURSOR = re.compile(r"[A-Za-z0-9_-]+")
