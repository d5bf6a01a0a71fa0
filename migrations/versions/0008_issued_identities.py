"""issued identities (Classroom, EAP-TLS) kept across restarts and instances, sealed at rest

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table('issued_identities',
    sa.Column('ca_fingerprint', sa.String(length=64), nullable=False),
    sa.Column('cn', sa.String(length=255), nullable=False),
    sa.Column('cert_der', sa.LargeBinary(), nullable=False),
    sa.Column('cert_sha256', sa.String(length=64), nullable=False),
    sa.Column('not_after', TS, nullable=False),
    sa.Column('sealed', sa.LargeBinary(), nullable=False),
    sa.Column('issued_at', TS, nullable=False),
    sa.PrimaryKeyConstraint('ca_fingerprint', 'cn', name=op.f('pk_issued_identities'))
    )


def downgrade() -> None:
    op.drop_table('issued_identities')
