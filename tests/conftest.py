"""Shared fixtures: a migrated database (SQLite, or PostgreSQL with DATABASE_URL), PKI, app, clients."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from fastapi.testclient import TestClient

from app.container import Container
from app.main import create_app
from app.services.enrollment import hash_secret
from app.settings import Settings
from tests.support.db import fresh_database, truncate_all
from tests.support.device import TestDevice

ADMIN_TOKEN = "test-admin-token"


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    from app.pki_store import load_or_create

    load_or_create(d, org="Test City Schools", public_url="https://127.0.0.1:8443")
    return d


@pytest.fixture(scope="session")
def db_url(tmp_path_factory):
    with fresh_database(tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture
def settings(data_dir, db_url) -> Settings:
    return Settings(data_dir=data_dir, database_url=db_url, public_url="https://127.0.0.1:8443",
                    org_name="Test City Schools", log_level="INFO")


@pytest.fixture
def container(settings):
    c = Container(settings)
    truncate_all(c.engine)
    c.tokens.ensure("admin", ADMIN_TOKEN, "admin", c.clock())
    yield c
    c.close()


@pytest.fixture
def app(container):
    return create_app(container.settings, container=container, background=False)


@pytest.fixture
def client(app):
    with TestClient(app, base_url="https://testserver") as c:
        yield c


@pytest.fixture
def api(client):
    client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    return client


@pytest.fixture
def school(container):
    token = "enroll-secret-" + os.urandom(4).hex()
    container.schools.upsert("gs-nord", "Grundschule Nord", hash_secret(token), container.clock())
    return {"id": "gs-nord", "token": token}


@pytest.fixture
def device(client):
    return TestDevice(client)


@pytest.fixture
def enrolled(client, school):
    return TestDevice(client).enroll(school["id"], school["token"])


def aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)
