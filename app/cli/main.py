"""``schoolmdm``: the command line for operators, technicians and the support desk.

Technician and support commands talk to the JSON API (``/api/v1``) over HTTPS; the operator
commands that bootstrap and run the server box work on the local database directly.
"""

from __future__ import annotations

import typer

from app.cli import admin, blueprints, demo, devices, jobs, ops, queue

app = typer.Typer(help="schoolmdm: device management for a city's school iPads.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
# through /api/v1
app.add_typer(devices.app, name="devices", help="Find and inspect devices (API).")
app.add_typer(jobs.app, name="jobs", help="Bulk jobs: follow, cancel, retry (API).")
app.add_typer(admin.tokens, name="tokens", help="API tokens (API, admin).")
queue.register(app)
# local, on the server box
app.add_typer(admin.schools, name="schools", help="Schools and their enrollment URLs (local).")
app.add_typer(blueprints.blueprint, name="blueprint", help="School blueprints: check, import, show, diff, push (local).")
app.add_typer(blueprints.profiles, name="profiles", help="Built profiles: list, build, diff (local).")
admin.register(app)
ops.register(app)
demo.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
