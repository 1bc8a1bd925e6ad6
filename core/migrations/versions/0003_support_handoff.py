"""support handoff: agent console sessions, one live ticket per chat, agents' Telegram ids

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

LIVE = sa.text("status IN ('pending', 'open')")


def upgrade() -> None:
    op.create_table(
        "agent_sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("agent_id", sa.Integer(), sa.ForeignKey("agents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_agent_sessions_agent", "agent_sessions", ["agent_id"])
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("language", sa.String(8), nullable=False, server_default="fr"))
        batch.add_column(sa.Column("telegram_user_id", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("handoff_tickets") as batch:
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("rated_at", sa.DateTime(timezone=True), nullable=True))
    # One live (pending or open) request per chat: a double press can't queue the customer twice.
    op.create_index("uq_handoff_tickets_live_user", "handoff_tickets", ["user_id"], unique=True,
                    sqlite_where=LIVE, postgresql_where=LIVE)
    op.create_index("ix_handoff_tickets_status", "handoff_tickets", ["status", "created_at"])
    op.create_index("ix_transcript_entries_ticket", "transcript_entries", ["ticket_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_transcript_entries_ticket", table_name="transcript_entries")
    op.drop_index("ix_handoff_tickets_status", table_name="handoff_tickets")
    op.drop_index("uq_handoff_tickets_live_user", table_name="handoff_tickets")
    with op.batch_alter_table("handoff_tickets") as batch:
        batch.drop_column("rated_at")
        batch.drop_column("updated_at")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("telegram_user_id")
        batch.drop_column("language")
    op.drop_index("ix_agent_sessions_agent", table_name="agent_sessions")
    op.drop_table("agent_sessions")
