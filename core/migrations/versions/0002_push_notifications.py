"""push notifications: biller events received, outbox announcement batches and the status index

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('biller_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('biller', sa.String(length=32), nullable=False),
    sa.Column('event_id', sa.String(length=128), nullable=False),
    sa.Column('event_type', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=64), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('biller', 'event_id', name='uq_biller_events_biller_event')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('batch', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_outbox_batch', ['batch'], unique=False)
        batch_op.create_index('ix_outbox_channel_status', ['channel', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_channel_status')
        batch_op.drop_index('ix_outbox_batch')
        batch_op.drop_column('batch')
    op.drop_table('biller_events')
