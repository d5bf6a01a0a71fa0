"""Issued identities in the database (app.storage.sql_identities).

The IdentityStore contract on the memory and the SQL store (SQLite, and PostgreSQL when
DATABASE_URL is set); key material sealed at rest; a new container or process reuses what an
earlier one issued, so a rebuild is byte-identical; two issuers racing for one CN end with one
identity.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select, update

from app.container import Container
from app.db.models import Profile
from app.db.models_identity import IssuedIdentityRow
from app.services.blueprints import BlueprintService
from app.storage.sealing import SealBroken
from app.storage.sql_identities import SQLIdentityStore
from mdm.pki import create_ca, new_key, utcnow
from profiles.issuer import CAIssuer, IssuedIdentity, MemoryIdentityStore
from profiles.profile import build_blueprint

ROOT = Path(__file__).resolve().parents[1]
CITY = ROOT / "examples" / "city"
T0 = dt.datetime(2026, 9, 1, 7, 30, tzinfo=dt.timezone.utc)


def fake(tag: str) -> IssuedIdentity:
    return IssuedIdentity(b"cert-" + tag.encode(), b"p12-" + tag.encode(), "pw-" + tag, T0 + dt.timedelta(days=30))


@pytest.fixture(params=["memory", "sql"])
def store(request, container):
    return MemoryIdentityStore() if request.param == "memory" else container.issued_identities


def test_identity_store_contract(store):
    assert store.get("ca1", "member.a") is None and store.get_all("ca1") == {}
    a, b = fake("a"), fake("b")
    assert store.put("ca1", "member.a", a) == a
    assert store.get("ca1", "member.a") == a
    assert store.put("ca1", "member.a", b) == a  # the first one stays: another issuer got there first
    assert store.put("ca1", "member.a", b, replaces=b"cert-other") == a  # it is not the one seen
    assert store.get("ca1", "member.a") == a
    assert store.put("ca1", "member.a", b, replaces=a.cert_der) == b  # renewal of the one seen
    assert store.get("ca1", "member.a") == b
    assert store.put("ca2", "member.a", a) == a  # per CA
    assert store.put("ca1", "leader.b", a) == a
    assert store.get_all("ca1") == {"member.a": b, "leader.b": a}
    assert store.get_all("ca2") == {"member.a": a} and store.get_all("ca3") == {}


def _rows(container) -> list[IssuedIdentityRow]:
    with container.sessions() as s:
        return list(s.execute(select(IssuedIdentityRow)).scalars())


def test_key_material_is_sealed_at_rest(container):
    issuer = CAIssuer(container.pki.ca, store=container.issued_identities, key=new_key())
    _, p12 = issuer("member.school.x")
    issuer("leader.school.y")
    key, _, _ = pkcs12.load_key_and_certificates(p12, issuer.password.encode())
    key_der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    rows = _rows(container)
    assert len(rows) == 2
    for row in rows:
        stored = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in
                          (row.ca_fingerprint, row.cn, row.cert_der, row.cert_sha256, row.not_after, row.sealed))
        assert p12 not in stored and key_der not in stored and issuer.password.encode() not in stored
        assert key_der[-64:] not in stored  # not even the key's tail
    # another CA's key does not open them
    other = SQLIdentityStore.for_ca(container.sessions, create_ca("Other CA", "Test City"))
    with pytest.raises(SealBroken):
        other.get(issuer.ca_fingerprint, "member.school.x")
    # a sealed blob moved to another row does not open there
    x, y = sorted(rows, key=lambda r: r.cn)  # leader..., member...
    with container.sessions.begin() as s:
        s.execute(update(IssuedIdentityRow).where(IssuedIdentityRow.cn == x.cn).values(sealed=y.sealed))
    with pytest.raises(SealBroken):
        container.issued_identities.get(issuer.ca_fingerprint, x.cn)
    # nor with another certificate put next to it
    with container.sessions.begin() as s:
        s.execute(update(IssuedIdentityRow).where(IssuedIdentityRow.cn == y.cn).values(cert_der=x.cert_der))
    with pytest.raises(SealBroken):
        container.issued_identities.get(issuer.ca_fingerprint, y.cn)


@pytest.fixture
def city(tmp_path):
    d = tmp_path / "city"
    shutil.copytree(CITY, d)
    return d


def _with_identity(profiles: list) -> list:
    return [p for p in profiles if b"com.apple.security.pkcs12" in p.plist]


def _stored(container) -> dict[str, Profile]:
    with container.sessions() as s:
        return {p.identifier: p for p in s.execute(select(Profile)).scalars()}


def test_a_new_container_rebuilds_with_the_stored_identities(container, settings, city):
    container.blueprints.import_dir(city, actor="test")
    stored = _stored(container)
    restarted = Container(settings)  # a restart, or a second instance: nothing shared but the database
    try:
        issuer = restarted.blueprints.issuer()
        _, bp = restarted.blueprints.blueprint("gy-schiller")
        rebuilt = _with_identity(build_blueprint(bp, "pupil", issuer=issuer).profiles)
        assert rebuilt and issuer.issued == 0
        for p in rebuilt:  # the same certificate and PKCS#12 bytes as the stored, installed version
            assert p.plist == stored[p.identifier].plist and p.content_hash == stored[p.identifier].content_hash
        again = restarted.blueprints.import_dir(city, actor="test")
        assert again.profiles_changed == []  # nothing new to push
    finally:
        restarted.close()


def test_a_per_process_store_rebuilds_other_bytes_but_the_same_hash(container, city):
    """The old behaviour (an in-memory store per process), after a restart: every identity is
    issued again and rebuilt profiles carry other key material - but their content hash blanks
    it, so an import makes no new versions and a push re-sends nothing; only cost and identity
    churn (a profile version made for another reason carries a new identity)."""
    container.blueprints.import_dir(city, actor="test")
    stored = _stored(container)
    restarted = BlueprintService(container.sessions, container.pki, identities=MemoryIdentityStore())
    issuer = restarted.issuer()
    _, bp = restarted.blueprint("gy-schiller")
    rebuilt = _with_identity(build_blueprint(bp, "pupil", issuer=issuer).profiles)
    assert rebuilt and issuer.issued == len(rebuilt)
    for p in rebuilt:
        assert p.plist != stored[p.identifier].plist and p.content_hash == stored[p.identifier].content_hash
    assert restarted.import_dir(city, actor="test").profiles_changed == []


def test_racing_issuers_end_with_one_identity_per_cn(container):
    store_a = container.issued_identities
    store_b = SQLIdentityStore.for_ca(container.sessions, container.pki.ca)
    key = new_key()
    a = CAIssuer(container.pki.ca, store=store_a, key=key, days=100)
    b = CAIssuer(container.pki.ca, store=store_b, key=key, days=100)
    b("member.s.other")  # b has read the store: "member.s.x" is not in it
    first = a("member.s.x")
    assert b("member.s.x") == first  # b issued its own, lost the insert and uses a's
    assert a.issued == 1 and b.issued == 2
    assert store_a.get(a.ca_fingerprint, "member.s.x").cert_der == first[0]
    # renewal races the same way: both see an identity due for renewal, one replacement wins
    later = utcnow() + dt.timedelta(days=41)  # 59 days left of 100: renewed (730 days) from here on
    a2 = CAIssuer(container.pki.ca, store=store_a, key=key, clock=lambda: later)
    b2 = CAIssuer(container.pki.ca, store=store_b, key=key, clock=lambda: later)
    b2("member.s.other")
    a2.issued = b2.issued = 0
    renewed = a2("member.s.x")
    assert renewed != first and b2("member.s.x") == renewed and a2.issued == b2.issued == 1
    assert store_b.get(a.ca_fingerprint, "member.s.x").cert_der == renewed[0]


RACER = """
import json, sys
from app.container import Container
from app.settings import Settings
from mdm.pki import new_key
from profiles.issuer import CAIssuer
c = Container(Settings(data_dir=sys.argv[1], database_url=sys.argv[2], public_url="https://127.0.0.1:8443",
                       org_name="Test City Schools"))
issuer = CAIssuer(c.pki.ca, store=c.issued_identities, key=new_key())
print(json.dumps({cn: issuer(cn)[0].hex() for cn in (f"member.race.{i}" for i in range(int(sys.argv[3])))}))
"""


def test_two_processes_issuing_at_once_agree(container, data_dir, db_url):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(data_dir), db_url, "40"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(json.loads(out))
    assert outs[0] == outs[1] and len(outs[0]) == 40
    stored = {r.cn: r.cert_der.hex() for r in _rows(container)}
    assert stored == outs[0]
