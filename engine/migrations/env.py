"""Alembic environment: the engine's models plus every plugin's, on SQLite or PostgreSQL.

Batch mode (``render_as_batch``) lets ALTER TABLE migrations run on SQLite too.
"""

from alembic import context

from engine.migrate import target_metadata

config = context.config


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through engine.migrate.upgrade()")
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
