"""Apple School Manager (ADE): server token, devices, profiles, serial rules; device set-up

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-26 10:00:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0003'
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('ade_config',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('consumer_key', sa.String(length=255), nullable=False),
    sa.Column('consumer_secret', sa.String(length=255), nullable=False),
    sa.Column('access_token', sa.String(length=255), nullable=False),
    sa.Column('access_secret', sa.String(length=255), nullable=False),
    sa.Column('access_token_expiry', TS, nullable=True),
    sa.Column('server_name', sa.String(length=255), nullable=True),
    sa.Column('server_uuid', sa.String(length=64), nullable=True),
    sa.Column('org_name', sa.String(length=255), nullable=True),
    sa.Column('uploaded_by', sa.String(length=128), nullable=True),
    sa.Column('uploaded_at', TS, nullable=False),
    sa.Column('cursor', sa.Text(), nullable=True),
    sa.Column('cursor_phase', sa.String(length=8), nullable=True),
    sa.Column('fetched_at', TS, nullable=True),
    sa.Column('synced_at', TS, nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_error_at', TS, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ade_config'))
    )
    op.create_table('ade_devices',
    sa.Column('serial', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=128), nullable=True),
    sa.Column('description', sa.String(length=255), nullable=True),
    sa.Column('color', sa.String(length=64), nullable=True),
    sa.Column('device_family', sa.String(length=32), nullable=True),
    sa.Column('os', sa.String(length=32), nullable=True),
    sa.Column('asset_tag', sa.String(length=128), nullable=True),
    sa.Column('profile_status', sa.String(length=16), nullable=True),
    sa.Column('profile_uuid', sa.String(length=64), nullable=True),
    sa.Column('device_assigned_by', sa.String(length=255), nullable=True),
    sa.Column('device_assigned_date', sa.String(length=32), nullable=True),
    sa.Column('op_type', sa.String(length=16), nullable=True),
    sa.Column('op_date', sa.String(length=32), nullable=True),
    sa.Column('school_id', sa.String(length=64), nullable=True),
    sa.Column('role', sa.String(length=16), server_default='pupil', nullable=False),
    sa.Column('assigned_profile_uuid', sa.String(length=64), nullable=True),
    sa.Column('assign_status', sa.String(length=32), nullable=True),
    sa.Column('assigned_at', TS, nullable=True),
    sa.Column('enrolled_udid', sa.String(length=64), nullable=True),
    sa.Column('enrolled_at', TS, nullable=True),
    sa.Column('removed_at', TS, nullable=True),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('updated_at', TS, nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_ade_devices_school_id_schools')),
    sa.PrimaryKeyConstraint('serial', name=op.f('pk_ade_devices'))
    )
    with op.batch_alter_table('ade_devices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ade_devices_school_id'), ['school_id'], unique=False)

    op.create_table('ade_profiles',
    sa.Column('school_id', sa.String(length=64), nullable=False),
    sa.Column('profile_uuid', sa.String(length=64), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('definition', sa.Text(), nullable=False),
    sa.Column('defined_at', TS, nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_ade_profiles_school_id_schools')),
    sa.PrimaryKeyConstraint('school_id', name=op.f('pk_ade_profiles'))
    )
    op.create_table('ade_school_rules',
    sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('pattern', sa.String(length=64), nullable=False),
    sa.Column('school_id', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), server_default='pupil', nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=True),
    sa.Column('created_at', TS, nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_ade_school_rules_school_id_schools')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ade_school_rules')),
    sa.UniqueConstraint('kind', 'pattern', name='uq_ade_school_rules_kind_pattern')
    )
    op.create_table('device_setup',
    sa.Column('udid', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.Column('configured_command', sa.String(length=128), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('started_at', TS, nullable=False),
    sa.Column('finished_at', TS, nullable=True),
    sa.ForeignKeyConstraint(['udid'], ['devices.udid'], name=op.f('fk_device_setup_udid_devices')),
    sa.PrimaryKeyConstraint('udid', name=op.f('pk_device_setup'))
    )
    with op.batch_alter_table('device_setup', schema=None) as batch_op:
        batch_op.create_index('ix_device_setup_state', ['state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('device_setup', schema=None) as batch_op:
        batch_op.drop_index('ix_device_setup_state')
    op.drop_table('device_setup')
    op.drop_table('ade_school_rules')
    op.drop_table('ade_profiles')
    with op.batch_alter_table('ade_devices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ade_devices_school_id'))
    op.drop_table('ade_devices')
    op.drop_table('ade_config')
