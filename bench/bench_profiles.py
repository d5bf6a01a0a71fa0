"""Build and sign every profile of a whole city: 154 schools x 2 roles.

The 154 school blueprints are generated from the three example schools
(examples/city), written to a temporary city directory and loaded like real
ones. Every built profile (the exam profile included) is signed with
``profiles.signing.sign_profile`` and the project's profile-signing identity
as ``app.pki_store.load_or_create`` makes it (EC P-256 by default, issued by
the device CA; the Classroom and EAP-TLS identities come from that CA too).
Issued identities are kept in the database as the server keeps them
(``app.storage.sql_identities``, migrated schema): a SQLite file, or a fresh
PostgreSQL database with ``--postgres``.

    python bench/bench_profiles.py [--schools 154] [--repeat 3] [--fresh-keys]
                                   [--postgres [ADMIN_URL]] [--signing-key ec-p256|rsa]
                                   [--json-out PATH]

Three builds per round, each timed as load (YAML -> merged blueprints),
identities (reading the stored ones), build (payloads, plist, content hash,
issuing what is missing) and sign:

* first: an empty database, so every Classroom and EAP-TLS identity is issued
  (a certificate + a PKCS#12 each) and stored, sealed - the first import ever,
  or a new CA. Reported with the cost per identity: (first build - restart
  build) / identities issued;
* restart: one school changed, then a new engine, store and issuer, as a
  blueprint import after a server restart (or on another instance) has: every
  identity is read from the database (timed), none is issued;
* warm: another change, rebuilt with the restart's issuer (its identities in
  memory): the pure build + sign.

Each figure is the best of ``--repeat`` rounds, wall clock (perf_counter) and
CPU (process_time, this process: PostgreSQL's own CPU is not in it) side by
side. The work is single-threaded, so on an idle machine the two agree; other
work on the machine inflates wall time only. By default the identities share
one RSA key (issuing is then a certificate signature and a PKCS#12, not a key
generation); ``--fresh-keys`` generates a key per identity as production does
(RSA-2048 generation: tens of ms each).

Target (issue "School blueprints"): build + sign of the city under 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.db.engine import make_engine, make_sessionmaker  # noqa: E402
from app.db.migrate import upgrade  # noqa: E402
from app.pki_store import load_or_create  # noqa: E402
from app.storage.sql_identities import SQLIdentityStore  # noqa: E402
from bench._db import DEFAULT_PG_ADMIN_URL, BenchDatabase  # noqa: E402
from mdm.pki import Identity, new_key  # noqa: E402
from profiles.blueprint.loader import load_city  # noqa: E402
from profiles.issuer import CAIssuer  # noqa: E402
from profiles.profile import BuiltProfile, build_school  # noqa: E402
from profiles.signing import sign_profile  # noqa: E402

EXAMPLES = ROOT / "examples" / "city"
ROLES = ("pupil", "teacher")
TARGET_S = 0.5
PHASES = ("load", "identities", "build", "sign")
COUNTED = ("identities", "build", "sign")  # what the target covers (loading the YAML is separate)
KINDS = ("first", "restart", "warm")


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


def change_one_school(city_dir: Path) -> str | None:
    """Toggle one school's camera restriction (a blueprint change); return the file changed."""
    for path in sorted((city_dir / "schools").glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        for a, b in (("    camera: true", "    camera: false"), ("    camera: false", "    camera: true")):
            if a in text:
                path.write_text(text.replace(a, b, 1), encoding="utf-8")
                return path.name
    return None


class _Clock:
    """Wall and CPU time of one phase."""

    def __enter__(self) -> _Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def build_and_sign(city_dir: Path, issuer: CAIssuer, signing: Identity) -> dict:
    """Load the city, read the stored identities, build every school and role, sign every profile."""
    with _Clock() as load:
        city = load_city(city_dir)
    with _Clock() as identities:
        stored = len(issuer.load())
    with _Clock() as build:
        built: list[BuiltProfile] = []
        commands = 0
        for school_id in city.schools:
            for role in ROLES:
                b = build_school(city, school_id, role, issuer=issuer)
                built += b.profiles
                if b.exam is not None:
                    built.append(b.exam)
                commands += len(b.commands)
    with _Clock() as sign:
        signed_bytes = sum(len(sign_profile(p.plist, signing)) for p in built)
    clocks = dict(zip(PHASES, (load, identities, build, sign)))
    return {"schools": len(city.schools), "profiles": len(built), "commands": commands,
            "identities_stored": stored, "identities_issued": issuer.issued,
            "plist_bytes": sum(len(p.plist) for p in built), "signed_bytes": signed_bytes,
            **{f"{name}_{clock}_s": getattr(c, clock) for name, c in clocks.items() for clock in ("wall", "cpu")}}


def _pg_driver(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def _round(pki, city_dir: Path, db_url: str, key) -> dict:
    """First build, restart build, warm rebuild on one empty, migrated database."""
    engines = []

    def new_store() -> SQLIdentityStore:
        engines.append(make_engine(db_url))
        return SQLIdentityStore.for_ca(make_sessionmaker(engines[-1]), pki.ca)

    try:
        first = build_and_sign(city_dir, CAIssuer(pki.ca, key=key, store=new_store()), pki.signing)
        changed = [change_one_school(city_dir)]
        restarted = CAIssuer(pki.ca, key=key, store=new_store())  # as a new process has it
        restart = build_and_sign(city_dir, restarted, pki.signing)
        changed.append(change_one_school(city_dir))
        warm = build_and_sign(city_dir, restarted, pki.signing)
    finally:
        for e in engines:
            e.dispose()
    return {"first": first, "restart": {**restart, "changed": changed[0]}, "warm": {**warm, "changed": changed[1]}}


def run(n_schools: int = 154, *, repeat: int = 3, fresh_keys: bool = False, signing_key: str = "ec-p256",
        postgres: str | None = None, workdir: Path | None = None) -> dict:
    """``repeat`` rounds of a first, a restart and a warm build + sign; the best of each figure."""
    with tempfile.TemporaryDirectory() as tmp:
        base = workdir or Path(tmp)
        pki = load_or_create(base / "data", org="Bench City", public_url="https://mdm.bench.invalid",
                             signing_key=signing_key)
        city_dir = generate_city(base / "city", n_schools)
        shared_key = None if fresh_keys else new_key()
        rounds = []
        for i in range(repeat):
            db = BenchDatabase.postgres(postgres) if postgres else None
            url = _pg_driver(db.url) if db else f"sqlite:///{base}/identities-{i}.db"
            try:
                upgrade(url)
                rounds.append(_round(pki, city_dir, url, shared_key))
            finally:
                if db:
                    db.drop()
    result = {"cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version(),
              "platform": platform.platform(), "command": sys.argv, "repeat": repeat,
              "database": "postgresql (fresh database per round)" if postgres else "sqlite (file per round)",
              "signing": f"profiles.signing.sign_profile, {signing_key} (app.pki_store.load_or_create)",
              "identity_keys": "fresh RSA-2048 per identity" if fresh_keys else "one shared RSA-2048 key",
              "target_s": TARGET_S, "rounds": rounds}
    for kind in KINDS:
        runs = [r[kind] for r in rounds]
        best = {k: runs[0][k] for k in ("schools", "profiles", "commands", "identities_stored",
                                          "identities_issued", "plist_bytes", "signed_bytes")}
        for clock in ("wall", "cpu"):
            for name in PHASES:
                best[f"{name}_{clock}_s"] = min(r[f"{name}_{clock}_s"] for r in runs)
            best[f"total_{clock}_s"] = min(sum(r[f"{n}_{clock}_s"] for n in COUNTED) for r in runs)
        best["ms_per_profile_wall"] = best["total_wall_s"] / max(best["profiles"], 1) * 1000
        result[kind] = best
    issued = result["first"]["identities_issued"]
    for clock in ("wall", "cpu"):
        extra = result["first"][f"build_{clock}_s"] - result["restart"][f"build_{clock}_s"]
        result[f"ms_per_identity_{clock}"] = extra / issued * 1000 if issued else None
    return result


def table(r: dict) -> str:
    first = r["first"]
    lines = [
        f"os.cpu_count() = {r['cpu_count']}, load average {', '.join(f'{x:.2f}' for x in r['load_average'])}"
        f"  (Python {r['python']})",
        f"{first['schools']} schools x {len(ROLES)} roles: {first['profiles']} profiles, {first['commands']} commands, "
        f"{first['plist_bytes'] / 1e6:.1f} MB plist, {first['signed_bytes'] / 1e6:.1f} MB signed",
        f"signing: {r['signing']}; identities: {r['identity_keys']}; database: {r['database']}",
        f"best of {r['repeat']} rounds       {'wall s':>8} {'cpu s':>8} {'ms/profile':>11}",
    ]
    for kind in KINDS:
        b = r[kind]
        n = max(b["profiles"], 1)
        source = "in the issuer's memory" if kind == "warm" else "read from the database"
        lines.append(f"{kind} ({b['identities_issued']} identities issued, {b['identities_stored']} {source}):")
        for name in PHASES:
            per = "" if name == "load" else f"{b[f'{name}_wall_s'] / n * 1000:>11.3f}"
            lines.append(f"  {name:<24} {b[f'{name}_wall_s']:>8.3f} {b[f'{name}_cpu_s']:>8.3f} {per}")
        lines.append(f"  {'identities+build+sign':<24} {b['total_wall_s']:>8.3f} {b['total_cpu_s']:>8.3f} "
                     f"{b['ms_per_profile_wall']:>11.3f}")
    if r["ms_per_identity_wall"] is not None:
        lines.append(f"issuing and storing one identity: {r['ms_per_identity_wall']:.2f} ms wall, "
                     f"{r['ms_per_identity_cpu']:.2f} ms cpu ((first build - restart build) / issued)")
    for kind in KINDS if first["schools"] == 154 else ():
        verdicts = []
        for clock in ("wall", "cpu"):
            t = r[kind][f"total_{clock}_s"]
            verdicts.append(f"{t:.3f} s {clock} " + (f"(met, {TARGET_S / t:.1f}x under)" if t < TARGET_S
                                                      else f"(missed, {t / TARGET_S:.1f}x over)"))
        lines.append(f"target < {TARGET_S} s, {kind}: {', '.join(verdicts)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="build and sign all profiles of a city: first, restart, warm")
    ap.add_argument("--schools", type=int, default=154)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; every figure is the best of them")
    ap.add_argument("--fresh-keys", action="store_true", help="a new RSA key per issued identity")
    ap.add_argument("--signing-key", choices=("ec-p256", "rsa"), default="ec-p256",
                    help="profile-signing key type (app.pki_store; default ec-p256)")
    ap.add_argument("--postgres", nargs="?", const=DEFAULT_PG_ADMIN_URL, metavar="ADMIN_URL",
                    help="keep identities in a fresh PostgreSQL database per round (default: SQLite)")
    ap.add_argument("--json-out", type=Path, help="also write the results (every round) as JSON")
    args = ap.parse_args(argv)
    if args.schools < 1 or args.repeat < 1:
        ap.error("--schools and --repeat must be at least 1")
    r = run(args.schools, repeat=args.repeat, fresh_keys=args.fresh_keys, signing_key=args.signing_key,
            postgres=args.postgres)
    print(table(r))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
