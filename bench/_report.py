"""The storm bench's readable table and its JSON file."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

MIB = 1024 * 1024


def git_revision(root: Path) -> dict:
    """HEAD and whether tracked files differ from it (read-only: no index refresh)."""
    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "--no-optional-locks", *args], cwd=root, capture_output=True, text=True,
                               timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    rev = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"revision": rev, "dirty": bool(status) if status is not None else None}


def write_json(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _num(v, unit: str = "", digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}{unit}"
    return f"{v:,}{unit}"


def _lat(lat: dict | None) -> str:
    if not lat or not lat.get("count"):
        return "-"
    return f"p50 {lat['p50']:.1f} / p95 {lat['p95']:.1f} / p99 {lat['p99']:.1f} ms (max {lat['max']:.0f}, n={lat['count']:,})"


def _mib(b) -> str:
    return "-" if b is None else f"{b / MIB:,.1f} MiB"


def _cpu_rows(phase: dict, cores: int) -> list[tuple[str, str]]:
    parts = ", ".join(f"{k} {v:.1f}" for k, v in phase["seconds"].items())
    return [(f"CPU s ({phase['name']})", f"{parts} over {phase['wall_seconds']:.1f} s wall "
                                         f"= {phase['utilisation']:.0%} of {cores} cores"),
            (f"  machine busy ({phase['name']})", f"{phase['machine_utilisation']:.0%} "
                                                  f"(other processes {phase['other_processes_seconds']:.1f} s)")]


def table(r: dict) -> str:
    rows: list[tuple[str, str]] = []
    add = rows.append
    add(("run", f"{r['mode']}, {r['devices']:,} iPads, {r['db']}, {r['workers']} server worker(s), "
                f"concurrency {r['concurrency']}, {r['cpu_count']} CPUs"))
    add(("git", f"{r['git']['revision'] or '?'}{' (dirty)' if r['git']['dirty'] else ''}"))
    e = r.get("enroll")
    if e:
        add(("enroll", f"{e['enrolled']:,}/{e['devices']:,} in {e['seconds']:.1f} s = {_num(e['per_second'])} iPads/s"))
        add(("enroll request latency", _lat(e.get("latency_ms"))))
    s = r.get("storm")
    if s:
        add(("bulk enqueue (API call)", f"{s['queued']:,} InstallProfile in {s['enqueue_seconds']:.2f} s"))
    if s and "wall_seconds" in s:  # the storm finished
        fm, ff = s["push_fanout"]["mock"], s["push_fanout"]["feed"]
        if fm["per_second"] is None and fm["seconds"] is not None:
            add(("push fan-out (mock stats)", f"{fm['pushes']:,} pushes within ~{fm['seconds']:.2f} s "
                                              f"(too fast for the {fm['resolution_seconds']} s polling)"))
        else:
            add(("push fan-out (mock stats)", f"{_num(fm['per_second'])} pushes/s "
                                              f"({fm['pushes']:,} in {_num(fm['seconds'], ' s', 2)}, "
                                              f"±{fm['resolution_seconds']} s)"))
        add(("push fan-out (feed)", f"{_num(ff['per_second'])} pushes/s "
                                    f"({ff['pushes']:,} in {_num(ff['seconds'], ' s', 2)})"))
        add(("storm wall (enqueue→all ack)", f"{_num(s['wall_seconds'], ' s', 2)}  "
                                            f"({_num(s['acknowledged_per_second'])} acks/s)"))
        add(("device requests/s (storm)", f"{_num(s['device_requests_per_second'])} "
                                          f"({s['device_requests']:,} requests)"))
        add(("device request latency", _lat(s["latency_ms"]["all"])))
        for label, lat in s["latency_ms"]["by_request"].items():
            add((f"  {label}", _lat(lat)))
        err = s["errors"]
        add(("errors (storm)", f"simulator {err['simulator']}, non-2xx {err['non_2xx']}, job {err['job_failed']}"))
        add(("double applications", str(s["double_applications"])))
        add(("profiles installed", f"{s['profiles_installed']:,}/{r['devices']:,}"))
    st = r.get("steady")
    if st:
        i = st.get("idle")
        if i:
            add(("idle check-ins/s", f"{_num(i['per_second'])} ({i['sessions']:,} in {i['seconds']:.1f} s)"))
            add(("idle latency", _lat(i["latency_ms"])))
        rt = st.get("round_trips")
        if rt:
            add(("DeviceInformation enqueue", f"{rt['queued']:,} in {rt['enqueue_seconds']:.2f} s"))
            add(("command round trips/s", f"{_num(rt['per_second'])} ({rt['round_trips']:,} in {rt['seconds']:.1f} s)"))
            add(("round-trip request latency", _lat(rt["latency_ms"])))
        for key in ("idle", "round_trips"):
            if st.get(key, {}).get("cpu"):
                rows.extend(_cpu_rows(st[key]["cpu"], r["cpu_count"]))
        err = st.get("errors")
        if err:
            add(("errors (steady)", f"simulator {err['simulator']}, non-2xx {err['non_2xx']}"))
    cpu = r.get("cpu")
    if cpu:
        if cpu.get("phase"):
            rows.extend(_cpu_rows(cpu["phase"], r["cpu_count"]))
        if cpu.get("total"):
            add(("CPU s (whole run)", ", ".join(f"{k} {v:.1f}" for k, v in cpu["total"].items())))
    srv = r.get("server")
    if srv:
        add(("server peak RSS", f"{_mib(srv['peak_rss_bytes'])} (sum of VmHWM over {srv['processes']} processes; "
                                f"peak concurrent {_mib(srv['peak_rss_sum_bytes'])})"))
    sim = r.get("simulator") or {}
    if sim.get("peak_rss_bytes"):
        add(("simulator peak RSS", _mib(sim["peak_rss_bytes"])))
    db = r.get("database")
    if db and db.get("bytes") is not None:
        per = f", {db['bytes'] / r['devices'] / 1024:.1f} KiB per iPad" if r["devices"] else ""
        add(("database size", f"{_mib(db['bytes'])}{per}"))
    add(("result", "OK" if r.get("ok") else f"FAILED: {r.get('error')}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
