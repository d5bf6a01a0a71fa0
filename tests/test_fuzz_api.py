"""The whole ``/api/v1`` against its own OpenAPI document, with schemathesis.

Every operation gets requests generated from ``app.openapi()``: valid ones (positive mode),
ones that break the schema (negative mode: wrong types, missing or extra fields, odd path
and query values), and valid ones whose path parameters name objects that exist (a device,
a school with a blueprint, a job, a command, a profile, a loan, a wave, a token, a webhook),
so that generated requests get past "not found" into the services. Once with an admin
token and once with a support token scoped to one school: never a 5xx (the ASGI transport
re-raises any uncaught exception), and every refusal is the JSON error body.
"""

from __future__ import annotations

import shutil
import traceback
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as budget
from hypothesis import strategies as st
from schemathesis import GenerationMode

from app.services.enrollment import hash_secret
from tests.conftest import ADMIN_TOKEN
from tests.support.device import TestDevice

ROOT = Path(__file__).resolve().parents[1]
SCHOOL = "gy-schiller"

pytestmark = pytest.mark.filterwarnings("ignore")  # schemathesis warns about what it cannot generate


@pytest.fixture
def settings(settings):
    """A fuzzer sends hundreds of requests per token: rate limits off."""
    return settings.model_copy(update={"token_rate_per_second": 0.0, "device_rate_per_second": 0.0})


@pytest.fixture
def world(app, api, client, container, tmp_path):
    """A small city: the example blueprints and roster, two enrolled iPads, a job, a loan, a wave,
    a webhook and a support token for one school. Returns the support token and the real
    values of every path parameter the API has."""
    city = tmp_path / "city"
    shutil.copytree(ROOT / "examples" / "city", city)
    container.blueprints.import_dir(city, actor="fuzz")
    container.roster.import_path(ROOT / "examples" / "roster", actor="fuzz")
    container.schools.upsert(SCHOOL, "Schiller-Gymnasium", hash_secret("t"), container.clock())
    devices = [TestDevice(client).enroll(SCHOOL, "t") for _ in range(2)]
    job = api.post("/api/v1/commands", json={"request_type": "DeviceInformation",
                                             "devices": [d.udid for d in devices]}).json()
    profile = api.get(f"/api/v1/schools/{SCHOOL}/profiles").json()["items"][0]
    pupil = api.get("/api/v1/roster/pupils", params={"school": SCHOOL, "limit": 1}).json()["items"]
    loan = api.post("/api/v1/loans", json={"udid": devices[1].udid, "pupil": pupil[0]["person_id"]}) if pupil else None
    wave = api.post("/api/v1/waves", json={"name": "fuzz-wave", "csv": f"{devices[0].serial},{SCHOOL}\n"})
    api.post("/api/v1/webhooks", json={"name": "fuzz-hook", "url": "https://127.0.0.1:9/", "events": ["*"]})
    support = container.tokens.create("fuzz-support", "support", [SCHOOL], container.clock())
    known = {
        "udid": devices[0].udid, "school_id": SCHOOL, "job_id": job["job"]["id"],
        "command_uuid": job["command_uuid"], "profile_id": profile["id"], "name": "fuzz-hook",
        "loan_id": loan.json()["id"] if loan is not None and loan.status_code == 201 else 1,
        "wave_id": wave.json().get("id", 1) if wave.status_code == 201 else 1,
        "pupil": pupil[0]["person_id"] if pupil else "nobody",
    }
    return {"support": support, "known": known}


def operations(app) -> list:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex=r"^/api/v1/")
    return [result.ok() for result in schema.get_all_operations()]


ODD_STRINGS = ["\x00", "a\x00b", "\x01\x1f", "x" * 300, "\U0001f600" * 40, "\u202e", "%00", "../..", "' OR 1=1 --",
               "", " ", "\ud7ff\ue000"]
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20), st.sampled_from(ODD_STRINGS)),
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)),
    max_leaves=10)


def bodies(operation, known: dict):
    """Bodies for operations whose interesting paths need a real name, which a schema cannot tell:
    a known RequestType with odd parameters, loans and waves naming real and odd devices and pupils."""
    from mdm.commands import known_request_types

    odd = st.one_of(st.text(max_size=30), st.sampled_from(ODD_STRINGS))
    return {
        "POST /api/v1/commands": st.fixed_dictionaries({
            "request_type": st.sampled_from(known_request_types()),
            "params": st.dictionaries(st.text(max_size=12), json_values, max_size=4),
            "devices": st.one_of(st.just([known["udid"]]), st.lists(odd, min_size=1, max_size=3))}),
        "POST /api/v1/loans": st.fixed_dictionaries({
            "udid": st.one_of(st.just(known["udid"]), odd), "pupil": st.one_of(st.just(known["pupil"]), odd)}),
        "POST /api/v1/waves": st.fixed_dictionaries({
            "name": st.just("fuzz-wave-2"), "csv": st.lists(odd, max_size=4).map("\n".join),
            "school": st.one_of(st.none(), st.just(known["school_id"]), odd)}),
    }.get(operation.label)


def strategy(operation, known: dict):
    """Valid, invalid, and valid-with-real-path-parameters requests for one operation, and
    for some operations bodies made here."""
    real = {p.name: known[p.name] for p in operation.path_parameters if p.name in known}
    options = [operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
               operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)]
    if real:
        options.append(operation.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=real))
        options.append(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE, path_parameters=real))
    made = bodies(operation, known)
    if made is not None:
        options.append(made.flatmap(lambda body: operation.as_strategy(
            generation_mode=GenerationMode.POSITIVE, path_parameters=real, body=body)))
    return st.one_of(options)


def spice(value, data):
    """Some string leaves replaced with odd strings (NUL, control characters, long, RTL, traversal)."""
    if isinstance(value, str):
        return data.draw(st.sampled_from(ODD_STRINGS)) if data.draw(st.integers(0, 3)) == 0 else value
    if isinstance(value, dict):
        return {k: spice(v, data) for k, v in value.items()}
    if isinstance(value, list):
        return [spice(v, data) for v in value]
    return value


def describe(e: BaseException) -> str:
    text = "".join(traceback.format_exception_only(e)).strip()
    for sub in getattr(e, "exceptions", ()):  # hypothesis' FlakyFailure and other groups
        text += "\n  - " + describe(sub)
    return text


def fuzz_api(app, world, token: str, examples: int) -> dict[str, dict[int, int]]:
    """Statuses seen per operation; fails with every operation's (shrunk) failure at once."""
    seen: dict[str, dict[int, int]] = {}
    failures: list[str] = []
    headers = {"Authorization": f"Bearer {token}"}
    for operation in operations(app):
        counts = seen.setdefault(operation.label, {})

        @budget(max_examples=examples, deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=list(HealthCheck))
        @given(case=strategy(operation, world["known"]), data=st.data())
        def check(case, data):
            if data.draw(st.integers(0, 2), label="spice") == 0:
                case.path_parameters.update(spice(dict(case.path_parameters), data))
                case.query.update(spice(dict(case.query), data))
                if isinstance(case.body, (dict, list)):
                    object.__setattr__(case, "body", spice(case.body, data))
            response = case.call(headers=headers)
            counts[response.status_code] = counts.get(response.status_code, 0) + 1
            assert response.status_code < 500, (case.as_curl_command(), response.status_code, response.text[:500])
            if response.status_code >= 400:
                error = response.json()["error"]
                assert isinstance(error["code"], str) and isinstance(error["message"], str), response.text

        try:
            check()
        except Exception as e:  # noqa: BLE001 - collected, reported together below
            failures.append(f"{operation.label}: {describe(e)}"[:4000])
    assert not failures, "\n\n".join(failures)
    return seen


BUDGETS = [pytest.param(10, id="fast"), pytest.param(40, id="slow", marks=pytest.mark.slow)]


@pytest.mark.parametrize("examples", BUDGETS)
def test_api_as_admin_and_support(app, world, examples):
    seen = fuzz_api(app, world, ADMIN_TOKEN, examples)
    # the generator got past validation and authorisation on most operations
    assert sum(any(200 <= s < 300 for s in counts) for counts in seen.values()) >= len(seen) // 2, seen
    seen = fuzz_api(app, world, world["support"], examples)
    assert any(403 in counts for counts in seen.values()), seen  # the role is enforced somewhere


def _integer(schema: dict) -> bool:
    return schema.get("type") == "integer" or any(s.get("type") == "integer" for s in schema.get("anyOf", []))


def test_integers_past_the_database_range(app, api, world):
    """Every integer parameter of the API, at and past what the databases hold (PostgreSQL's
    INTEGER and BIGINT, SQLite's 64 bits): refused with 422, never a 5xx."""
    tried = 0
    for path, methods in app.openapi()["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, op in methods.items():
            params = op.get("parameters", [])
            for p in (p for p in params if _integer(p["schema"])):
                for value in (2**31, 2**63, -(2**63) - 1, 10**30):
                    values = {q["name"]: world["known"].get(q["name"], "x") for q in params if q["in"] == "path"}
                    query = {}
                    if p["in"] == "path":
                        values[p["name"]] = value
                    else:
                        query[p["name"]] = value
                    r = api.request(method.upper(), path.format(**values), params=query,
                                    json={} if "requestBody" in op else None)
                    assert r.status_code == 422, (method, path, p["name"], value, r.status_code, r.text[:300])
                    tried += 1
    assert tried >= 40
