"""Every profile built from the example city, signed by the organisation's identity, verifies with
``openssl cms -verify`` against our CA, and passes Apple's schema with zero errors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mdm import plist
from profiles.blueprint import load_city
from profiles.blueprint.models import ROLES
from profiles.issuer import CAIssuer
from profiles.profile import build_school
from profiles.schema.checker import check_payload
from profiles.signing import sign_profile

CITY = Path(__file__).resolve().parents[1] / "examples" / "city"


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl is not installed")
def test_every_example_profile_verifies_with_openssl(container, tmp_path):
    pki = container.pki
    city = load_city(CITY)
    issuer = CAIssuer(pki.ca)
    n = 0
    for school_id in city.schools:
        supervised = True
        for role in ROLES:
            build = build_school(city, school_id, role, issuer=issuer)
            for p in build.profiles + ([build.exam] if build.exam else []):
                for payload in p.payload["PayloadContent"]:
                    errors = [i for i in check_payload(payload, supervised=supervised) if i.severity == "error"]
                    assert errors == [], (p.identifier, errors)
                f = tmp_path / f"{p.identifier}.mobileconfig"
                f.write_bytes(sign_profile(p.plist, pki.signing))
                out = subprocess.run(["openssl", "cms", "-verify", "-inform", "DER", "-in", str(f),
                                      "-CAfile", str(pki.path("ca.pem")), "-purpose", "any"],
                                     capture_output=True, timeout=30)
                assert out.returncode == 0, (p.identifier, out.stderr.decode())
                assert plist.loads(out.stdout) == plist.loads(p.plist)  # the content is exactly the profile
                n += 1
    assert n >= 3 * 2 * 4
