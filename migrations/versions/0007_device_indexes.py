"""indexes for the support desk's device list sorted by last check-in

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""
from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_devices_last_seen_at", "devices", ["last_seen_at"])


def downgrade() -> None:
    op.drop_index("ix_devices_last_seen_at", table_name="devices")
