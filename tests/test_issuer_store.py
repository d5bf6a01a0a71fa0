"""CAIssuer with an IdentityStore: identities outlive one build, are renewed near their expiry."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from mdm.pki import create_ca, new_key, utcnow
from profiles.blueprint.loader import load_city
from profiles.issuer import CAIssuer, IssuedIdentity, MemoryIdentityStore, derived_password
from profiles.profile import build_school

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "city"


@pytest.fixture(scope="module")
def ca():
    return create_ca("Store Test CA", "Test City")


@pytest.fixture(scope="module")
def key():
    return new_key()


def test_a_stored_identity_is_reused_by_the_next_issuer(ca, key):
    store = MemoryIdentityStore()
    first = CAIssuer(ca, key=key, store=store)
    cert, p12 = first("member.x")
    second = CAIssuer(ca, key=key, store=store)
    assert second("member.x") == (cert, p12) and second.issued == 0 and first.issued == 1
    assert first.password == second.password == derived_password(ca)
    _, opened, _ = pkcs12.load_key_and_certificates(p12, second.password.encode())
    assert opened.not_valid_after_utc == store.get(first.ca_fingerprint, "member.x").not_after


def test_another_ca_or_password_issues_anew(ca, key):
    store = MemoryIdentityStore()
    CAIssuer(ca, key=key, store=store)("member.x")
    other_ca = CAIssuer(create_ca("Another CA", "Test City"), key=key, store=store)
    assert other_ca("member.x") and other_ca.issued == 1
    assert derived_password(other_ca.ca) != derived_password(ca)
    other_password = CAIssuer(ca, key=key, store=store, password="operator's choice")
    cert, p12 = other_password("member.x")
    assert other_password.issued == 1
    pkcs12.load_key_and_certificates(p12, b"operator's choice")
    assert store.get(other_password.ca_fingerprint, "member.x").password == "operator's choice"


def test_renewed_before_expiry(ca, key):
    store = MemoryIdentityStore()
    now = utcnow()
    first = CAIssuer(ca, key=key, store=store, days=100, clock=lambda: now)
    old = first("leader.x")
    later = CAIssuer(ca, key=key, store=store, days=100, clock=lambda: now + dt.timedelta(days=30))
    assert later("leader.x") == old and later.issued == 0  # 70 days left > 60
    late = CAIssuer(ca, key=key, store=store, days=100, clock=lambda: now + dt.timedelta(days=41))
    renewed = late("leader.x")
    assert renewed != old and late.issued == 1
    assert store.get(late.ca_fingerprint, "leader.x").cert_der == renewed[0]


def test_memory_store_keeps_the_most_recently_used():
    store = MemoryIdentityStore(max_entries=2)
    ident = IssuedIdentity(b"c", b"p", "pw", utcnow())
    store.put("ca", "a", ident)
    store.put("ca", "b", ident)
    assert store.get("ca", "a") is ident  # a is now the most recent
    store.put("ca", "c", ident)
    assert store.get("ca", "b") is None and store.get("ca", "a") is ident and len(store) == 2


def test_rebuilds_with_a_store_carry_the_same_identities(ca, key):
    city = load_city(EXAMPLES)
    store = MemoryIdentityStore()
    one = build_school(city, "ges-nordstadt", "pupil", issuer=CAIssuer(ca, key=key, store=store))
    again = CAIssuer(ca, key=key, store=store)
    two = build_school(city, "ges-nordstadt", "pupil", issuer=again)
    assert again.issued == 0
    assert [p.plist for p in one.profiles] == [p.plist for p in two.profiles]
    assert one.profile("classroom").content_hash == two.profile("classroom").content_hash
