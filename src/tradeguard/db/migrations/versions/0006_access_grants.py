"""Staff access: levels, just-in-time grants, break-glass reviews, permission use (issue #8).

Users gain `access_level` (IAC-2) and `permissions_version` (bumped by every change to what
they may do, so cached session states are never served past a change). Staff who exist when
this runs get the admin level: every permission of their role, exactly what they held
before levels existed. Traders keep no level.

Revision ID: 0006_access_grants
Revises: 0005_trading_core
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_access_grants"
down_revision = "0005_trading_core"
branch_labels = None
depends_on = None

STAFF_ROLES = ("ADMIN", "COMPLIANCE", "SUPPORT")


def upgrade() -> None:
    op.create_table(
        "access_grants",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("permission", sa.String(length=40), nullable=True),
        sa.Column("level", sa.String(length=20), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("customers", sa.JSON(), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("requested_ns", sa.BigInteger(), nullable=False),
        sa.Column("decide_by_ns", sa.BigInteger(), nullable=False),
        sa.Column("decided_by", sa.String(length=36), nullable=True),
        sa.Column("decided_ns", sa.BigInteger(), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.Column("starts_ns", sa.BigInteger(), nullable=True),
        sa.Column("expires_ns", sa.BigInteger(), nullable=True),
        sa.Column("ended_ns", sa.BigInteger(), nullable=True),
        sa.Column("ended_by", sa.String(length=100), nullable=True),
        sa.Column("end_note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["users.id"], name=op.f("fk_access_grants_decided_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_access_grants_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_grants")),
    )
    with op.batch_alter_table("access_grants", schema=None) as batch_op:
        batch_op.create_index(
            "ix_access_grants_status_expires", ["status", "expires_ns"], unique=False
        )
        batch_op.create_index("ix_access_grants_user_status", ["user_id", "status"], unique=False)

    op.create_table(
        "access_permission_use",
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("permission", sa.String(length=40), nullable=False),
        sa.Column("last_used_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_access_permission_use_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", "permission", name=op.f("pk_access_permission_use")),
    )
    op.create_table(
        "access_breakglass_reviews",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("grant_id", sa.String(length=36), nullable=False),
        sa.Column("taker_id", sa.String(length=36), nullable=False),
        sa.Column("opened_ns", sa.BigInteger(), nullable=False),
        sa.Column("closed_ns", sa.BigInteger(), nullable=True),
        sa.Column("closed_by", sa.String(length=36), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["closed_by"], ["users.id"], name=op.f("fk_access_breakglass_reviews_closed_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["access_grants.id"],
            name=op.f("fk_access_breakglass_reviews_grant_id_access_grants"),
        ),
        sa.ForeignKeyConstraint(
            ["taker_id"], ["users.id"], name=op.f("fk_access_breakglass_reviews_taker_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_breakglass_reviews")),
        sa.UniqueConstraint("grant_id", name=op.f("uq_access_breakglass_reviews_grant_id")),
    )
    with op.batch_alter_table("access_breakglass_reviews", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_access_breakglass_reviews_closed_ns"), ["closed_ns"], unique=False
        )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("access_level", sa.String(length=20), nullable=True))
        batch_op.add_column(
            sa.Column("permissions_version", sa.Integer(), server_default="0", nullable=False)
        )

    users = sa.table("users", sa.column("role", sa.String), sa.column("access_level", sa.String))
    op.execute(users.update().where(users.c.role.in_(STAFF_ROLES)).values(access_level="admin"))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("permissions_version")
        batch_op.drop_column("access_level")

    with op.batch_alter_table("access_breakglass_reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_breakglass_reviews_closed_ns"))

    op.drop_table("access_breakglass_reviews")
    op.drop_table("access_permission_use")
    with op.batch_alter_table("access_grants", schema=None) as batch_op:
        batch_op.drop_index("ix_access_grants_user_status")
        batch_op.drop_index("ix_access_grants_status_expires")

    op.drop_table("access_grants")
