"""``schoolmdm``: the command line for operators, technicians and the support desk.

Technician and support commands talk to the JSON API (``/api/v1``) over HTTPS; the operator
commands that bootstrap and run the server box work on the local database directly.
"""

from __future__ import annotations

import typer

from app.cli import admin, blueprints, demo, devices, jobs, ops, queue
from app.cli import loans, roster
from app.cli import ade

app = typer.Typer(help="schoolmdm: device management for a city's school iPads.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
# through /api/v1
app.add_typer(devices.app, name="devices", help="Find and inspect devices (API).")
app.add_typer(jobs.app, name="jobs", help="Bulk jobs: follow, cancel, retry (API).")
app.add_typer(admin.tokens, name="tokens", help="API tokens (API, admin).")
queue.register(app)
app.add_typer(roster.waves, name="waves", help="Delivery waves: create, list, show (API).")
app.add_typer(roster.rollout, name="rollout", help="The city's rollout progress and next in line; plan (API).")
app.add_typer(loans.app, name="loans", help="Loaner iPads: lend, return, list, find (API).")
app.add_typer(roster.roster, name="roster", help="Apple School Manager roster: import (local).")
# local, on the server box
app.add_typer(admin.schools, name="schools", help="Schools and their enrollment URLs (local).")
app.add_typer(blueprints.blueprint, name="blueprint", help="School blueprints: check, import, show, diff, push (local).")
app.add_typer(blueprints.profiles, name="profiles", help="Built profiles: list, build, diff (local).")
app.add_typer(ade.app, name="ade", help="Apple School Manager (ADE): identity, token, map, sync, status (local).")
admin.register(app)
ops.register(app)
demo.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
