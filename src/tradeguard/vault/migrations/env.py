"""Alembic environment of the vault database: its own chain, its own version table."""

from alembic import context

from tradeguard.vault.models import VERSION_TABLE, VaultBase

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run vault migrations with `tradeguard vault upgrade`, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=VaultBase.metadata,
    # A table name of its own: even pointed at the main database by mistake, this chain
    # never reads or moves the main chain's alembic_version.
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
