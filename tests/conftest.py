"""Shared fixtures: settings, databases (SQLite and PostgreSQL), servers and processes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from imagegate.api.server import background_server
from imagegate.jobs.database import create_db_engine, upgrade
from imagegate.jobs.store import JobStore
from imagegate.settings import Settings, load_settings

PG_ENV = "IMAGEGATE_TEST_DATABASE_URL"
SettingsFactory = Callable[..., Settings]


def _postgres_admin_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if url:
        return url
    if os.environ.get("CI") == "true":
        pytest.fail(f"{PG_ENV} must be set under CI: the PostgreSQL tests are required there")
    return None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    admin_url = _postgres_admin_url()
    if admin_url is None:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (e.g. postgresql://postgres@127.0.0.1/test)")
    yield from _fresh_postgres_database(admin_url)


def _fresh_postgres_database(admin_url: str) -> Iterator[str]:
    name = f"imagegate_test_{uuid.uuid4().hex[:12]}"
    admin = make_url(admin_url).set(drivername="postgresql+psycopg")
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield (
            admin.set(database=name)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        engine.dispose()


@pytest.fixture
def make_settings(tmp_path: Path, database_url: str) -> SettingsFactory:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "poll_interval_s": 0.2,
            "log_level": "warning",
            # Term lists only: the semantic model has tests of its own (test_safety*.py).
            "safety_semantic": False,
        }
        return load_settings(**(values | overrides))

    return make


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings()


@pytest.fixture
def store(settings: Settings) -> Iterator[JobStore]:
    engine = create_db_engine(settings)
    upgrade(engine)
    yield JobStore(engine, max_attempts=settings.max_retries)
    engine.dispose()


@pytest.fixture
def server_factory(database_url: str) -> Iterator[Callable[..., httpx.Client]]:
    """Start a real uvicorn server on a loopback port; returns an httpx client for it.

    It asks for ``database_url`` so the servers stop before their database is dropped.
    """
    stack: list[Any] = []

    def start(settings: Settings, workers: int = 1) -> httpx.Client:
        context = background_server(settings, workers)
        base = context.__enter__()
        client = httpx.Client(base_url=base, timeout=30)
        stack.append((context, client))
        return client

    yield start
    for context, client in reversed(stack):
        client.close()
        context.__exit__(None, None, None)


@pytest.fixture
def api(server_factory: Callable[..., httpx.Client], settings: Settings) -> httpx.Client:
    return server_factory(settings)
