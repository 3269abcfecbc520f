"""The staking API index: delegations (state, next change tip), their finality providers, finality
providers, params versions, counters and sync metadata.

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delegations",
        sa.Column("staking_tx_hash", sa.String(64), primary_key=True),
        sa.Column("staker_pk", sa.String(64), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("next_change_tip", sa.BigInteger, nullable=True),
        sa.Column("updated_height", sa.BigInteger, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_index("ix_delegations_staker", "delegations", ["staker_pk", "staking_tx_hash"])
    op.create_index("ix_delegations_next_change", "delegations", ["next_change_tip"])
    op.create_table(
        "delegation_fps",
        sa.Column("fp_pk", sa.String(66), primary_key=True),
        sa.Column("staking_tx_hash", sa.String(64), primary_key=True),
    )
    op.create_table(
        "finality_providers",
        sa.Column("btc_pk", sa.String(66), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("slashed", sa.Boolean, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_table(
        "params_versions",
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_table(
        "counters",
        sa.Column("scope", sa.String(8), primary_key=True),
        sa.Column("key", sa.String(66), primary_key=True),
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "meta",
        sa.Column("key", sa.String(32), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("meta", "counters", "params_versions", "finality_providers", "delegation_fps", "delegations"):
        op.drop_table(table)
