"""``schoolmdm``: the command line for operators and technicians."""

from __future__ import annotations

import typer

from app.cli import admin, devices, ops, queue

app = typer.Typer(help="schoolmdm: device management for a city's school iPads.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.add_typer(devices.app, name="devices", help="Find and inspect devices.")
app.add_typer(admin.tokens, name="tokens", help="API tokens (admin).")
app.add_typer(admin.schools, name="schools", help="Schools and their enrollment URLs.")
admin.register(app)
queue.register(app)
ops.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
