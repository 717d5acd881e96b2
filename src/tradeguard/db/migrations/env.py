"""Alembic environment: migrations run on a connection handed in by tradeguard.db.migrate."""

from alembic import context

import tradeguard.access.alerts_models
import tradeguard.access.models
import tradeguard.aml.models
import tradeguard.apikeys.models

# Every domain's tables, so autogenerate (`make migration`) sees the whole schema.
import tradeguard.backoffice.models
import tradeguard.crypto.models
import tradeguard.fraud.models
import tradeguard.funds.models
import tradeguard.identity.models
import tradeguard.kyc.documents.models
import tradeguard.kyc.onboarding.models
import tradeguard.kyc.sanctions.models
import tradeguard.ledger.archive.models
import tradeguard.ledger.models
import tradeguard.ledger.personal.models
import tradeguard.ledger.search.models
import tradeguard.ledger.tree.models
import tradeguard.notify.models
import tradeguard.surveillance.models
import tradeguard.trading.models
import tradeguard.vault.cards_models  # noqa: F401
from tradeguard.db.base import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `tradeguard db upgrade`, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
