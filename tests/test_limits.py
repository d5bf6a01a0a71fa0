"""Limits: each has a setting and a test."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.container import Container
from app.limits import RateLimiter
from app.main import create_app
from mdm.errors import RateLimited
from tests.conftest import ADMIN_TOKEN
from tests.support.device import TestDevice
from tests.support.db import truncate_all


def test_token_bucket_refills():
    now = [0.0]
    rl = RateLimiter(2, 3, clock=lambda: now[0])
    for _ in range(3):
        rl.check("a")
    with pytest.raises(RateLimited):
        rl.check("a")
    rl.check("b")  # buckets are per key
    now[0] += 0.5
    rl.check("a")  # one token back after half a second at 2/s
    with pytest.raises(RateLimited):
        rl.check("a")


@pytest.fixture
def strict(settings):
    s = settings.model_copy(update={"device_rate_per_second": 1.0, "device_rate_burst": 3.0,
                                    "token_rate_per_second": 1.0, "token_rate_burst": 2.0, "max_api_bytes": 2048})
    c = Container(s)
    truncate_all(c.engine)
    c.tokens.ensure("admin", ADMIN_TOKEN, "admin", c.clock())
    with TestClient(create_app(s, container=c, background=False), base_url="https://testserver") as client:
        yield c, client
    c.close()


def test_device_rate_limit(strict):
    c, client = strict
    from app.services.enrollment import hash_secret

    c.schools.upsert("s", "S", hash_secret("t"), c.clock())
    dev = TestDevice(client).enroll("s", "t")  # Authenticate + TokenUpdate take 2 of the burst of 3
    assert dev.connect("Idle").status_code == 200
    r = dev.connect("Idle")
    assert r.status_code == 429 and r.headers["retry-after"]
    assert "too many requests" in r.json()["error"]["message"]


def test_token_rate_limit_and_api_body_limit(strict):
    c, client = strict
    h = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert client.get("/api/v1/schools", headers=h).status_code == 200
    assert client.get("/api/v1/schools", headers=h).status_code == 200
    assert client.get("/api/v1/schools", headers=h).status_code == 429
    big = client.post("/api/v1/commands", headers=h, content=b"{" + b" " * 4096 + b"}")
    assert big.status_code == 413


def test_request_timeout(settings, monkeypatch):
    import time as _time

    s = settings.model_copy(update={"request_timeout_seconds": 0.3})
    c = Container(s)
    truncate_all(c.engine)
    c.tokens.ensure("admin", ADMIN_TOKEN, "admin", c.clock())
    monkeypatch.setattr(c.devices, "list", lambda **kw: _time.sleep(1.0) or {"items": [], "total": 0})
    with TestClient(create_app(s, container=c, background=False), base_url="https://testserver") as client:
        r = client.get("/api/v1/devices", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "timeout"
    c.close()
