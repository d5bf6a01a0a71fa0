"""``schoolmdm jobs list|show|devices|cancel|retry`` and following a job with a live progress bar."""

from __future__ import annotations

import time
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from app.cli.apiclient import ApiClient, CaFileOpt, JsonOpt, ServerOpt, TokenOpt, connect, path
from app.cli.common import (EXIT_ERROR, EXIT_JOB_FAILED, EXIT_UNAVAILABLE, CliError, console, err_console,
                            error_line, handle_errors, print_json, say, table)

app = typer.Typer(no_args_is_help=True)

#: seconds between two polls of ``GET /api/v1/jobs/{id}`` while following a job
POLL_SECONDS = 0.5

#: how long following a job tolerates an unreachable server before giving up (exit code 5)
UNREACHABLE_GRACE = 30.0

WaitOpt = typer.Option(None, "--timeout", min=0, help="stop waiting after this many seconds (exit code 1)")


def counts_line(job: dict) -> str:
    c = job["counts"]
    shown = [f"{k.replace('_', ' ')} {v}" for k, v in c.items() if v]
    return ", ".join(shown) or "no devices"


def done(job: dict) -> int:
    c = job["counts"]
    return job["total"] - (c["queued"] + c["sent"] + c["not_now"])


def succeeded(job: dict) -> bool:
    """Every device of the job acknowledged (an empty job succeeded too)."""
    return job["state"] == "finished" and job["counts"]["acknowledged"] >= job["total"]


def _bar(job: dict) -> dict:
    if not job["total"]:  # nothing to do: a full bar
        return {"total": 1, "completed": 1, "counts": "no devices"}
    return {"total": job["total"], "completed": done(job), "counts": counts_line(job)}


def follow(api: ApiClient, job: dict, *, timeout: float | None = None) -> dict:
    """Poll the job until it is no longer running, with a live progress bar on stderr; the final job."""
    started = last_ok = time.monotonic()
    label = f"{job['request_type']} {job['id'][:8]}"
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), console=err_console) as bar:
        task = bar.add_task(label, **_bar(job))
        try:
            while job["state"] == "running":
                if timeout is not None and time.monotonic() - started >= timeout:
                    raise CliError(f"job {job['id']} is still running after {timeout:g}s "
                                   f"({counts_line(job)}); follow it with 'schoolmdm jobs show {job['id']} --follow'",
                                   EXIT_ERROR)
                time.sleep(POLL_SECONDS)
                try:
                    job = api.get(path("jobs", job["id"]))
                    last_ok = time.monotonic()
                except CliError as e:  # a server restart should not end a long wait
                    if e.exit_code != EXIT_UNAVAILABLE or time.monotonic() - last_ok > UNREACHABLE_GRACE:
                        raise
                    bar.update(task, counts=f"{counts_line(job)} (server unreachable, retrying)")
                    continue
                bar.update(task, **_bar(job))
        except KeyboardInterrupt:
            raise CliError(f"stopped following; job {job['id']} goes on on the server "
                           f"('schoolmdm jobs show {job['id']} --follow')", 130) from None
    return job


def finish(job: dict, json_out: bool) -> None:
    """Report a followed job; exit code 6 unless every device acknowledged."""
    if json_out:
        print_json(job)
    else:
        say(f"job {job['id']} {job['state']}: {counts_line(job)} of {job['total']}")
    if not succeeded(job):
        missing = job["total"] - job["counts"]["acknowledged"]
        error_line(f"job {job['id']} {job['state']}: {missing} of {job['total']} device(s) did not acknowledge "
                   f"(see 'schoolmdm jobs devices {job['id']}')")
        raise typer.Exit(EXIT_JOB_FAILED)


def print_job(job: dict) -> None:
    for k in ("id", "kind", "request_type", "target", "school_id", "created_by", "created_at", "expires_at",
              "cancelled_at", "state", "total"):
        say(f"  {k:13} {job.get(k) if job.get(k) is not None else '-'}")
    say(f"  {'progress':13} {round(100 * job['progress'])}% ({counts_line(job)})")


@app.command("list")
@handle_errors
def list_(school: Optional[str] = typer.Option(None, help="only this school's jobs"),
          limit: int = typer.Option(50, min=1, max=500), offset: int = typer.Option(0, min=0),
          server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
          json_out: JsonOpt = False) -> None:
    """Recent bulk jobs, newest first."""
    with connect(server, token, ca_file) as api:
        res = api.get("/jobs", school=school, limit=limit, offset=offset)
    if json_out:
        return print_json(res)
    console.print(table(("id", "kind", "request", "target", "by", "created", "state", "done", "counts"),
                        ((j["id"], j["kind"], j["request_type"], j["target"], j["created_by"], j["created_at"],
                          j["state"], f"{done(j)}/{j['total']}", counts_line(j)) for j in res["items"])))
    say(f"{len(res['items'])} of {res['total']}")


@app.command("show")
@handle_errors
def show(job_id: str = typer.Argument(..., help="job id"),
         follow_: bool = typer.Option(False, "--follow", "-f", help="live progress until the job ends "
                                      "(exit code 6 unless every device acknowledged)"),
         timeout: Optional[float] = WaitOpt,
         server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
         json_out: JsonOpt = False) -> None:
    """One job: target, state and counts per status."""
    with connect(server, token, ca_file) as api:
        job = api.get(path("jobs", job_id))
        if follow_:
            return finish(follow(api, job, timeout=timeout), json_out)
    print_json(job) if json_out else print_job(job)


@app.command("devices")
@handle_errors
def devices(job_id: str = typer.Argument(..., help="job id"),
            status: Optional[str] = typer.Option(None, help="queued | sent | acknowledged | error | not_now | "
                                                 "cancelled | expired"),
            limit: int = typer.Option(100, min=1, max=1000), offset: int = typer.Option(0, min=0),
            server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
            json_out: JsonOpt = False) -> None:
    """The devices of a job and how far each got (with the error chain of failures)."""
    with connect(server, token, ca_file) as api:
        res = api.get(path("jobs", job_id, "devices"), status=status, limit=limit, offset=offset)
    if json_out:
        return print_json(res)
    console.print(table(("udid", "serial", "name", "status", "sent", "completed", "error"),
                        ((d["udid"], d["serial"], d["name"], d["status"], d["sent_at"], d["completed_at"],
                          _error(d.get("error_chain"))) for d in res["items"])))
    say(f"{len(res['items'])} of {res['total']}")


def _error(chain: list | None) -> str:
    if not chain:
        return ""
    first = chain[0]
    return f"{first.get('ErrorDomain', '')} {first.get('ErrorCode', '')}: {first.get('LocalizedDescription', '')}"


@app.command("cancel")
@handle_errors
def cancel(job_id: str = typer.Argument(..., help="job id"),
           server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
           json_out: JsonOpt = False) -> None:
    """Cancel what is still queued (commands already sent may still report)."""
    with connect(server, token, ca_file) as api:
        job = api.post(path("jobs", job_id, "cancel"))
    if json_out:
        return print_json(job)
    say(f"cancelled {job.get('cancelled_now', 0)} queued device(s) of job {job['id']}; "
        f"now {job['state']}: {counts_line(job)}")


@app.command("retry")
@handle_errors
def retry(job_id: str = typer.Argument(..., help="job id"),
          wait: bool = typer.Option(False, "--wait", help="follow the retried job with a live progress bar"),
          timeout: Optional[float] = WaitOpt,
          server: ServerOpt = None, token: TokenOpt = None, ca_file: CaFileOpt = None,
          json_out: JsonOpt = False) -> None:
    """Queue the job's failed devices again with a fresh command."""
    with connect(server, token, ca_file) as api:
        job = api.post(path("jobs", job_id, "retry"))
        if wait:
            if not json_out:
                say(f"retried {job.get('retried', 0)} device(s) of job {job['id']}")
            return finish(follow(api, job, timeout=timeout), json_out)
    if json_out:
        return print_json(job)
    say(f"retried {job.get('retried', 0)} device(s) of job {job['id']}; now {job['state']}: {counts_line(job)}")
