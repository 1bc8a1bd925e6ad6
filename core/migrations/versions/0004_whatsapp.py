"""whatsapp: raw inbound webhook log, processed message ids, the chat's WhatsApp address and opt-in

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'inbound_webhooks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('body', sa.LargeBinary(), nullable=False),
        sa.Column('outcome', sa.String(length=32), nullable=True),
        sa.Column('detail', sa.Text(), nullable=True),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_inbound_webhooks_outcome', 'inbound_webhooks', ['outcome'])
    op.create_table(
        'inbound_message_ids',
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('message_id', sa.String(length=191), nullable=False),
        sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('channel', 'message_id'),
    )
    with op.batch_alter_table('chat_users') as batch:
        batch.add_column(sa.Column('whatsapp_address', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('whatsapp_opt_in', sa.Boolean(), nullable=True))
        batch.add_column(sa.Column('whatsapp_opt_in_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('whatsapp_opt_in_asked_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_outbox_provider_message_id', 'outbox', ['provider_message_id'])


def downgrade() -> None:
    op.drop_index('ix_outbox_provider_message_id', table_name='outbox')
    with op.batch_alter_table('chat_users') as batch:
        batch.drop_column('whatsapp_opt_in_asked_at')
        batch.drop_column('whatsapp_opt_in_at')
        batch.drop_column('whatsapp_opt_in')
        batch.drop_column('whatsapp_address')
    op.drop_table('inbound_message_ids')
    op.drop_index('ix_inbound_webhooks_outcome', table_name='inbound_webhooks')
    op.drop_table('inbound_webhooks')
