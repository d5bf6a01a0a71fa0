"""Build every profile for a whole city: 154 schools x 2 roles.

The 154 school blueprints are generated from the three example schools
(examples/city), written to a temporary city directory and loaded like real
ones, so loading and merging are measured too.

    python bench/bench_profiles.py [--schools 154] [--fresh-keys]

``run(..., sign=callable)`` also signs every built plist (``sign(plist_bytes)
-> bytes``); the lead plugs ``profiles.signing`` in there. By default Classroom
and EAP-TLS identities reuse one RSA key (issuing is then a certificate
signature, not a key generation); ``--fresh-keys`` generates a key per
identity as production does.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mdm.pki import create_ca, new_key  # noqa: E402
from profiles.blueprint.loader import load_city  # noqa: E402
from profiles.issuer import CAIssuer  # noqa: E402
from profiles.profile import build_school  # noqa: E402

EXAMPLES = ROOT / "examples" / "city"


def generate_city(target: Path, n_schools: int = 154) -> Path:
    """A city directory with ``n_schools`` schools cloned from the example schools."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "base.yaml", target / "base.yaml")
    (target / "schools").mkdir(exist_ok=True)
    templates = sorted((EXAMPLES / "schools").glob("*.yaml"))
    for i in range(n_schools):
        src = templates[i % len(templates)]
        new_id = f"{src.stem}-{i + 1:03d}"
        text = src.read_text(encoding="utf-8").replace(f"id: {src.stem}", f"id: {new_id}")
        text = text.replace("\n  name: ", f"\n  name: Nr. {i + 1} ", 1)
        (target / "schools" / f"{new_id}.yaml").write_text(text, encoding="utf-8")
    return target


def run(n_schools: int = 154, *, sign: Callable[[bytes], bytes] | None = None,
        fresh_keys: bool = False, workdir: Path | None = None) -> dict:
    """Generate, load and build the city; return timings (seconds) and counts."""
    ca = create_ca("Bench Classroom CA", "Bench City")
    issuer = CAIssuer(ca, key=None if fresh_keys else new_key())
    with tempfile.TemporaryDirectory() as tmp:
        city_dir = generate_city((workdir or Path(tmp)) / "city", n_schools)
        t0 = time.perf_counter()
        city = load_city(city_dir)
        t1 = time.perf_counter()
        profiles = commands = 0
        signed_bytes = 0
        sign_time = 0.0
        for school_id in city.schools:
            for role in ("pupil", "teacher"):
                build = build_school(city, school_id, role, issuer=issuer)
                profiles += len(build.profiles) + (build.exam is not None)
                commands += len(build.commands)
                if sign is not None:
                    s0 = time.perf_counter()
                    for p in build.profiles + ([build.exam] if build.exam else []):
                        signed_bytes += len(sign(p.plist))
                    sign_time += time.perf_counter() - s0
        t2 = time.perf_counter()
    return {"schools": len(city.schools), "profiles": profiles, "commands": commands,
            "load_s": t1 - t0, "build_s": t2 - t1 - sign_time, "sign_s": sign_time,
            "total_s": t2 - t0, "signed_bytes": signed_bytes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="build all profiles for a city")
    ap.add_argument("--schools", type=int, default=154)
    ap.add_argument("--fresh-keys", action="store_true", help="a new RSA key per issued identity")
    args = ap.parse_args(argv)
    r = run(args.schools, fresh_keys=args.fresh_keys)
    per = r["build_s"] / max(r["profiles"], 1) * 1000
    print(f"{r['schools']} schools x 2 roles: {r['profiles']} profiles, {r['commands']} commands")
    print(f"load {r['load_s']:.2f}s  build {r['build_s']:.2f}s ({per:.2f} ms/profile)  "
          f"sign {r['sign_s']:.2f}s  total {r['total_s']:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
