"""jobs.chunked: a column for "cut into chunks", instead of the worker "(chunks)" sentinel

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SENTINEL = "(chunks)"
jobs = sa.table(
    "jobs",
    sa.column("id", sa.String()),
    sa.column("worker", sa.String()),
    sa.column("chunked", sa.Boolean()),
    sa.column("options", sa.JSON()),
)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("chunked", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    conn = op.get_bind()
    # A job was cut into chunks if its worker is the old sentinel or its options hold the plan.
    planned = conn.execute(
        sa.select(jobs.c.id, jobs.c.options).where(
            sa.cast(jobs.c.options, sa.Text).like('%"chunked"%')
        )
    ).all()
    ids = [
        row.id for row in planned if isinstance(row.options, dict) and row.options.get("chunked")
    ]
    conn.execute(
        sa.update(jobs)
        .where(sa.or_(jobs.c.worker == SENTINEL, jobs.c.id.in_(ids)))
        .values(chunked=sa.true(), worker=None)
    )


def downgrade() -> None:
    conn = op.get_bind()
    conn.execute(sa.update(jobs).where(jobs.c.chunked == sa.true()).values(worker=SENTINEL))
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("chunked")
