"""Content reports (schema/0016_reports_and_timestamps.sql, table `content_reports`).

C-S "Reporting Content": reports are stored for the server's administrators, who read them
from the database; nothing here serves them back to clients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from homeserver.storage.users import Executor

ReportKind = Literal["event", "room", "user"]


@dataclass(frozen=True, slots=True)
class ContentReport:
    reporter: str
    kind: ReportKind
    room_id: str | None
    event_id: str | None
    reported_user: str | None
    reason: str | None
    received_ts: int


async def insert_report(db: Executor, report: ContentReport) -> int:
    """Store a report; its id."""
    report_id = await db.fetchval(
        """
        INSERT INTO content_reports
            (reporter, kind, room_id, event_id, reported_user, reason, received_ts)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        RETURNING report_id
        """,
        report.reporter,
        report.kind,
        report.room_id,
        report.event_id,
        report.reported_user,
        report.reason,
        report.received_ts,
    )
    return int(report_id)


async def list_reports(db: Executor, limit: int = 100) -> list[ContentReport]:
    """The newest reports first (administration and tests)."""
    rows = await db.fetch(
        """
        SELECT reporter, kind, room_id, event_id, reported_user, reason, received_ts
        FROM content_reports ORDER BY received_ts DESC, report_id DESC LIMIT $1
        """,
        limit,
    )
    return [ContentReport(**dict(row)) for row in rows]
