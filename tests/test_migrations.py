"""The migrations build exactly the schema the models declare, and carry data across a change of shape."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from app.migrations import downgrade, upgrade
from app.models import Base, load_all_models


def test_the_migrated_schema_is_the_models_schema(migrated_database: str) -> None:
    load_all_models()
    engine = create_engine(migrated_database)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_what_the_webhooks_last_said_moves_onto_the_source_row_and_back(empty_database: str) -> None:
    engine = create_engine(empty_database)
    try:
        upgrade(engine, "0012")
        with engine.begin() as connection:
            account = connection.execute(text(
                "INSERT INTO accounts (name, created_at) VALUES ('a', CURRENT_TIMESTAMP) RETURNING id")).scalar_one()
            ids = [connection.execute(text(
                "INSERT INTO sources (account_id, type, name, display_name, properties, version, config_generation,"
                " created_at, updated_at) VALUES (:account, 'platform.hubspot', :name, :name, '{}', 1, 1,"
                " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP) RETURNING id"), {"account": account, "name": name}).scalar_one()
                for name in ("announced", "older")]
            connection.execute(text("INSERT INTO webhook_source_states (source_id, step_type, setup_state)"
                                    " VALUES (:id, 'field_selection', 'connected')"), {"id": ids[0]})

        upgrade(engine)
        with engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT id, announced_step, announced_state FROM sources ORDER BY id")).all()
        assert [tuple(row) for row in rows] == [(ids[0], "field_selection", "connected"), (ids[1], None, None)]

        downgrade(engine, "0012")
        with engine.connect() as connection:
            states = connection.execute(text(
                "SELECT source_id, step_type, setup_state FROM webhook_source_states")).all()
        assert [tuple(row) for row in states] == [(ids[0], "field_selection", "connected")]
    finally:
        engine.dispose()
