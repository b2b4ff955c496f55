"""Schema migrations (Alembic), without an alembic.ini: ``huntaze db upgrade``.

The engine's migrations live in ``engine/migrations``. A plugin that brings tables
names its own migrations folder in the entry-point group ``huntaze.migrations``
(``offers = "plugins.offers:migrations"``) and its metadata in ``huntaze.metadata``;
its revisions form their own Alembic branch, and ``upgrade`` applies every head.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from importlib.resources import files

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.engine import Engine

from engine.models import Base


def _plugin_locations() -> list[str]:
    locations = []
    for ep in entry_points(group="huntaze.migrations"):
        module, _, folder = ep.value.partition(":")
        locations.append(str(files(module) / (folder or "migrations")))
    return locations


def target_metadata() -> list[MetaData]:
    """The engine's metadata and every plugin's, for autogenerate."""
    metadata = [Base.metadata]
    for ep in entry_points(group="huntaze.metadata"):
        metadata.append(ep.load())
    return metadata


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("engine") / "migrations"))
    locations = [str(files("engine") / "migrations" / "versions"), *_plugin_locations()]
    config.set_main_option("version_locations", " ".join(locations))
    config.set_main_option("path_separator", "space")
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Bring the database's schema up to date (every branch, by default)."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current(engine: Engine) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def revision(engine: Engine, message: str, **kwargs) -> None:
    """Autogenerate a revision (a developer's tool: ``python -m engine.migrate``)."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True, **kwargs)


if __name__ == "__main__":  # pragma: no cover - developer tool
    import sys

    from engine.db import make_engine

    revision(make_engine(sys.argv[1]), sys.argv[2])
