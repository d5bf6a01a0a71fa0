"""Build and sign every profile of a whole city: 154 schools x 2 roles.

The 154 school blueprints are generated from the three example schools
(examples/city), written to a temporary city directory and loaded like real
ones. Every built profile (the exam profile included) is signed with
``profiles.signing.sign_profile`` and the project's profile-signing identity
as ``app.pki_store.load_or_create`` makes it (EC P-256 by default, issued by
the device CA; the Classroom and EAP-TLS identities come from that CA too).

    python bench/bench_profiles.py [--schools 154] [--repeat 3] [--fresh-keys]
                                   [--signing-key ec-p256|rsa] [--json-out PATH]

Two builds per round, each timed as load (YAML -> merged blueprints), build
(payloads, plist, content hash) and sign:

* cold: an empty identity store, so every Classroom and EAP-TLS identity is
  issued (a certificate + a PKCS#12 each) - the first import, or a new CA;
* warm: one school's blueprint changed (camera on/off), reloaded and rebuilt
  with a new issuer on the same store, as a blueprint import does: the
  identities are reused.

Each figure is the best of ``--repeat`` rounds, wall clock (perf_counter) and
CPU (process_time) side by side. The work is single-threaded, so on an idle
machine the two agree; other work on the machine inflates wall time only.
By default the identities share one RSA key (issuing is then a certificate
signature and a PKCS#12, not a key generation); ``--fresh-keys`` generates a
key per identity as production does (RSA-2048 generation: tens of ms each).

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

from app.pki_store import load_or_create  # noqa: E402
from mdm.pki import Identity, new_key  # noqa: E402
from profiles.blueprint.loader import load_city  # noqa: E402
from profiles.issuer import CAIssuer, MemoryIdentityStore  # noqa: E402
from profiles.profile import BuiltProfile, build_school  # noqa: E402
from profiles.signing import sign_profile  # noqa: E402

EXAMPLES = ROOT / "examples" / "city"
ROLES = ("pupil", "teacher")
TARGET_S = 0.5
PHASES = ("load", "build", "sign")


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
    """Load the city, build every school and role, sign every profile; timings and counts."""
    with _Clock() as load:
        city = load_city(city_dir)
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
    return {"schools": len(city.schools), "profiles": len(built), "commands": commands,
            "identities_issued": issuer.issued, "plist_bytes": sum(len(p.plist) for p in built),
            "signed_bytes": signed_bytes,
            **{f"{name}_wall_s": c.wall for name, c in zip(PHASES, (load, build, sign))},
            **{f"{name}_cpu_s": c.cpu for name, c in zip(PHASES, (load, build, sign))}}


def run(n_schools: int = 154, *, repeat: int = 3, fresh_keys: bool = False,
        signing_key: str = "ec-p256", workdir: Path | None = None) -> dict:
    """``repeat`` rounds of a cold and a warm build + sign; the best of each figure and every round."""
    with tempfile.TemporaryDirectory() as tmp:
        base = workdir or Path(tmp)
        pki = load_or_create(base / "data", org="Bench City", public_url="https://mdm.bench.invalid",
                             signing_key=signing_key)
        city_dir = generate_city(base / "city", n_schools)
        shared_key = None if fresh_keys else new_key()
        rounds = []
        for _ in range(repeat):
            store = MemoryIdentityStore()
            cold = build_and_sign(city_dir, CAIssuer(pki.ca, key=shared_key, store=store), pki.signing)
            changed = change_one_school(city_dir)
            warm = build_and_sign(city_dir, CAIssuer(pki.ca, key=shared_key, store=store), pki.signing)
            rounds.append({"cold": cold, "warm": {**warm, "changed": changed}})
    result = {"cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version(),
              "platform": platform.platform(), "command": sys.argv, "repeat": repeat,
              "signing": f"profiles.signing.sign_profile, {signing_key} (app.pki_store.load_or_create)",
              "identity_keys": "fresh RSA-2048 per identity" if fresh_keys else "one shared RSA-2048 key",
              "target_s": TARGET_S, "rounds": rounds}
    for kind in ("cold", "warm"):
        runs = [r[kind] for r in rounds]
        best = {k: runs[0][k] for k in ("schools", "profiles", "commands", "identities_issued",
                                          "plist_bytes", "signed_bytes")}
        for clock in ("wall", "cpu"):
            for name in PHASES:
                best[f"{name}_{clock}_s"] = min(r[f"{name}_{clock}_s"] for r in runs)
            best[f"build_sign_{clock}_s"] = min(r[f"build_{clock}_s"] + r[f"sign_{clock}_s"] for r in runs)
        best["ms_per_profile_wall"] = best["build_sign_wall_s"] / max(best["profiles"], 1) * 1000
        best["ms_per_profile_cpu"] = best["build_sign_cpu_s"] / max(best["profiles"], 1) * 1000
        result[kind] = best
    return result


def table(r: dict) -> str:
    cold, warm = r["cold"], r["warm"]
    lines = [
        f"os.cpu_count() = {r['cpu_count']}, load average {', '.join(f'{x:.2f}' for x in r['load_average'])}"
        f"  (Python {r['python']})",
        f"{cold['schools']} schools x {len(ROLES)} roles: {cold['profiles']} profiles, {cold['commands']} commands, "
        f"{cold['plist_bytes'] / 1e6:.1f} MB plist, {cold['signed_bytes'] / 1e6:.1f} MB signed",
        f"signing: {r['signing']}; identities: {r['identity_keys']}",
        f"best of {r['repeat']} rounds     {'wall s':>8} {'cpu s':>8} {'ms/profile':>11}",
    ]
    for kind, b in (("cold", cold), ("warm", warm)):
        n = max(b["profiles"], 1)
        what = (f"{b['identities_issued']} identities issued" if b["identities_issued"]
                else "identities reused")
        lines.append(f"{kind} ({what}):")
        for name in PHASES:
            per = "" if name == "load" else f"{b[f'{name}_wall_s'] / n * 1000:>11.3f}"
            lines.append(f"  {name:<22} {b[f'{name}_wall_s']:>8.3f} {b[f'{name}_cpu_s']:>8.3f} {per}")
        lines.append(f"  {'build + sign':<22} {b['build_sign_wall_s']:>8.3f} {b['build_sign_cpu_s']:>8.3f} "
                     f"{b['ms_per_profile_wall']:>11.3f}")
    for kind, b in (("cold", cold), ("warm", warm)) if cold["schools"] == 154 else ():
        verdicts = []
        for clock in ("wall", "cpu"):
            t = b[f"build_sign_{clock}_s"]
            verdicts.append(f"{t:.3f} s {clock} " + (f"(met, {TARGET_S / t:.1f}x under)" if t < TARGET_S
                                                      else f"(missed, {t / TARGET_S:.1f}x over)"))
        lines.append(f"target build + sign < {TARGET_S} s, {kind}: {', '.join(verdicts)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="build and sign all profiles of a city, cold and warm")
    ap.add_argument("--schools", type=int, default=154)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; every figure is the best of them")
    ap.add_argument("--fresh-keys", action="store_true", help="a new RSA key per issued identity")
    ap.add_argument("--signing-key", choices=("ec-p256", "rsa"), default="ec-p256",
                    help="profile-signing key type (app.pki_store; default ec-p256)")
    ap.add_argument("--json-out", type=Path, help="also write the results (every round) as JSON")
    args = ap.parse_args(argv)
    if args.schools < 1 or args.repeat < 1:
        ap.error("--schools and --repeat must be at least 1")
    r = run(args.schools, repeat=args.repeat, fresh_keys=args.fresh_keys, signing_key=args.signing_key)
    print(table(r))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
