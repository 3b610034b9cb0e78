"""Shared fixtures: real servers on free localhost ports, real DuckDB files in temp dirs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.database import Database
from tests.serving import RunningServer, free_port

TOKENS = {"test": "test-token-0123456789", "other": "other-token-9876543210"}
ADMIN_TOKEN = "admin-token-abcdef0123456789"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One signed-requests-only server for the session; tests reset their database. It runs two
    server processes, so that every test that reads back what it wrote, or is recommended to
    after an interaction, also proves read-your-writes across servers."""
    running = RunningServer(
        tmp_path_factory.mktemp("server"), free_port(), TOKENS, admin_token=ADMIN_TOKEN, workers=2
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture
def live(server: RunningServer) -> RunningServer:
    """The session's server with the `test` database reset (empty) for this test."""
    from recombee_api_client.api_requests import ResetDatabase

    server.client().send(ResetDatabase())
    return server


@pytest.fixture
def unsigned_server(tmp_path: Path) -> Iterator[RunningServer]:
    running = RunningServer(tmp_path, free_port(), {"test": "t"}, allow_unsigned=True)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    """A fresh database in a real DuckDB file."""
    db = Database("test", tmp_path / "test.duckdb")
    yield db
    db.close()
