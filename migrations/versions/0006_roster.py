"""roster (Apple School Manager CSV), rollout waves, device loans

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 12:00:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('waves',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_waves')),
    sa.UniqueConstraint('name', name=op.f('uq_waves_name'))
    )
    op.create_table('asm_locations',
    sa.Column('location_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('school_id', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_asm_locations_school_id_schools')),
    sa.PrimaryKeyConstraint('location_id', name=op.f('pk_asm_locations'))
    )
    with op.batch_alter_table('asm_locations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_asm_locations_school_id'), ['school_id'], unique=False)

    op.create_table('rollout_schools',
    sa.Column('school_id', sa.String(length=64), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=True),
    sa.Column('planned', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_rollout_schools_school_id_schools')),
    sa.PrimaryKeyConstraint('school_id', name=op.f('pk_rollout_schools'))
    )
    op.create_table('roster_courses',
    sa.Column('course_id', sa.String(length=128), nullable=False),
    sa.Column('course_number', sa.String(length=64), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('location_id', sa.String(length=128), nullable=False),
    sa.Column('school_id', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_roster_courses_school_id_schools')),
    sa.PrimaryKeyConstraint('course_id', name=op.f('pk_roster_courses'))
    )
    with op.batch_alter_table('roster_courses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_roster_courses_school_id'), ['school_id'], unique=False)

    op.create_table('roster_pupils',
    sa.Column('person_id', sa.String(length=128), nullable=False),
    sa.Column('person_number', sa.String(length=64), nullable=True),
    sa.Column('first_name', sa.String(length=100), nullable=False),
    sa.Column('middle_name', sa.String(length=100), nullable=True),
    sa.Column('last_name', sa.String(length=100), nullable=False),
    sa.Column('grade_level', sa.String(length=32), nullable=True),
    sa.Column('email', sa.String(length=255), nullable=True),
    sa.Column('sis_username', sa.String(length=128), nullable=True),
    sa.Column('password_policy', sa.String(length=2), nullable=True),
    sa.Column('location_id', sa.String(length=128), nullable=False),
    sa.Column('other_locations', sa.Text(), nullable=True),
    sa.Column('school_id', sa.String(length=64), nullable=False),
    sa.Column('search', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_roster_pupils_school_id_schools')),
    sa.PrimaryKeyConstraint('person_id', name=op.f('pk_roster_pupils'))
    )
    with op.batch_alter_table('roster_pupils', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_roster_pupils_person_number'), ['person_number'], unique=False)
        batch_op.create_index(batch_op.f('ix_roster_pupils_school_id'), ['school_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_roster_pupils_sis_username'), ['sis_username'], unique=False)

    op.create_table('roster_teachers',
    sa.Column('person_id', sa.String(length=128), nullable=False),
    sa.Column('person_number', sa.String(length=64), nullable=True),
    sa.Column('first_name', sa.String(length=100), nullable=False),
    sa.Column('middle_name', sa.String(length=100), nullable=True),
    sa.Column('last_name', sa.String(length=100), nullable=False),
    sa.Column('email', sa.String(length=255), nullable=True),
    sa.Column('sis_username', sa.String(length=128), nullable=True),
    sa.Column('location_id', sa.String(length=128), nullable=False),
    sa.Column('other_locations', sa.Text(), nullable=True),
    sa.Column('school_id', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_roster_teachers_school_id_schools')),
    sa.PrimaryKeyConstraint('person_id', name=op.f('pk_roster_teachers'))
    )
    with op.batch_alter_table('roster_teachers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_roster_teachers_school_id'), ['school_id'], unique=False)

    op.create_table('wave_devices',
    sa.Column('serial', sa.String(length=64), nullable=False),
    sa.Column('wave_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('school_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_wave_devices_school_id_schools')),
    sa.ForeignKeyConstraint(['wave_id'], ['waves.id'], name=op.f('fk_wave_devices_wave_id_waves')),
    sa.PrimaryKeyConstraint('serial', name=op.f('pk_wave_devices'))
    )
    with op.batch_alter_table('wave_devices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_wave_devices_school_id'), ['school_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_wave_devices_wave_id'), ['wave_id'], unique=False)

    op.create_table('loans',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('udid', sa.String(length=64), nullable=False),
    sa.Column('serial', sa.String(length=64), nullable=True),
    sa.Column('school_id', sa.String(length=64), nullable=True),
    sa.Column('pupil_id', sa.String(length=128), nullable=False),
    sa.Column('pupil_name', sa.String(length=300), nullable=False),
    sa.Column('person_number', sa.String(length=64), nullable=True),
    sa.Column('sis_username', sa.String(length=128), nullable=True),
    sa.Column('search', sa.Text(), nullable=False),
    sa.Column('lent_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lent_by', sa.String(length=128), nullable=False),
    sa.Column('returned_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('returned_by', sa.String(length=128), nullable=True),
    sa.Column('return_note', sa.String(length=500), nullable=True),
    sa.Column('erase_job_id', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['udid'], ['devices.udid'], name=op.f('fk_loans_udid_devices')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_loans'))
    )
    with op.batch_alter_table('loans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_loans_pupil_id'), ['pupil_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_loans_udid'), ['udid'], unique=False)
        batch_op.create_index('uq_loans_open_device', ['udid'], unique=True, postgresql_where=sa.text('returned_at IS NULL'), sqlite_where=sa.text('returned_at IS NULL'))
        batch_op.create_index('uq_loans_open_pupil', ['pupil_id'], unique=True, postgresql_where=sa.text('returned_at IS NULL'), sqlite_where=sa.text('returned_at IS NULL'))

    op.create_table('roster_classes',
    sa.Column('class_id', sa.String(length=128), nullable=False),
    sa.Column('class_number', sa.String(length=64), nullable=True),
    sa.Column('display_name', sa.String(length=200), nullable=True),
    sa.Column('course_id', sa.String(length=128), nullable=False),
    sa.Column('location_id', sa.String(length=128), nullable=False),
    sa.Column('school_id', sa.String(length=64), nullable=False),
    sa.Column('group_id', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['course_id'], ['roster_courses.course_id'], name=op.f('fk_roster_classes_course_id_roster_courses')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_roster_classes_school_id_schools')),
    sa.PrimaryKeyConstraint('class_id', name=op.f('pk_roster_classes')),
    sa.UniqueConstraint('school_id', 'group_id', name='uq_roster_classes_school_group')
    )
    with op.batch_alter_table('roster_classes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_roster_classes_course_id'), ['course_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_roster_classes_school_id'), ['school_id'], unique=False)

    op.create_table('roster_members',
    sa.Column('class_id', sa.String(length=128), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('person_id', sa.String(length=128), nullable=False),
    sa.Column('roster_id', sa.String(length=128), nullable=True),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['class_id'], ['roster_classes.class_id'], name=op.f('fk_roster_members_class_id_roster_classes')),
    sa.PrimaryKeyConstraint('class_id', 'role', 'person_id', name=op.f('pk_roster_members'))
    )
    with op.batch_alter_table('roster_members', schema=None) as batch_op:
        batch_op.create_index('ix_roster_members_person', ['person_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('roster_members', schema=None) as batch_op:
        batch_op.drop_index('ix_roster_members_person')

    op.drop_table('roster_members')
    with op.batch_alter_table('roster_classes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_roster_classes_school_id'))
        batch_op.drop_index(batch_op.f('ix_roster_classes_course_id'))

    op.drop_table('roster_classes')
    with op.batch_alter_table('loans', schema=None) as batch_op:
        batch_op.drop_index('uq_loans_open_pupil', postgresql_where=sa.text('returned_at IS NULL'), sqlite_where=sa.text('returned_at IS NULL'))
        batch_op.drop_index('uq_loans_open_device', postgresql_where=sa.text('returned_at IS NULL'), sqlite_where=sa.text('returned_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_loans_udid'))
        batch_op.drop_index(batch_op.f('ix_loans_pupil_id'))

    op.drop_table('loans')
    with op.batch_alter_table('wave_devices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_wave_devices_wave_id'))
        batch_op.drop_index(batch_op.f('ix_wave_devices_school_id'))

    op.drop_table('wave_devices')
    with op.batch_alter_table('roster_teachers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_roster_teachers_school_id'))

    op.drop_table('roster_teachers')
    with op.batch_alter_table('roster_pupils', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_roster_pupils_sis_username'))
        batch_op.drop_index(batch_op.f('ix_roster_pupils_school_id'))
        batch_op.drop_index(batch_op.f('ix_roster_pupils_person_number'))

    op.drop_table('roster_pupils')
    with op.batch_alter_table('roster_courses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_roster_courses_school_id'))

    op.drop_table('roster_courses')
    op.drop_table('rollout_schools')
    with op.batch_alter_table('asm_locations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_asm_locations_school_id'))

    op.drop_table('asm_locations')
    op.drop_table('waves')
