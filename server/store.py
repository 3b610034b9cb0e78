"""The databases a server holds open, by name."""

from __future__ import annotations

from server.config import Config, DatabaseConfig
from storage.database import Database


class Store:
    """Opens every configured database at start-up and closes them at shutdown."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._databases: dict[str, Database] = {}

    def open(self) -> None:
        for name in self.config.databases:
            if name not in self._databases:
                self._databases[name] = Database(
                    name, self.config.database_path(name), read_threads=self.config.read_threads
                )

    def get(self, name: str) -> tuple[Database, DatabaseConfig] | None:
        database = self._databases.get(name)
        if database is None:
            return None
        return database, self.config.databases[name]

    def names(self) -> list[str]:
        return sorted(self._databases)

    def close(self) -> None:
        for database in self._databases.values():
            database.close()
        self._databases.clear()
