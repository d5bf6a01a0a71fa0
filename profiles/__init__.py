"""Configuration profiles for school iPads: blueprints, payload builders, schema checks.

Pure library (no FastAPI / SQLAlchemy / httpx). The main entry points are
re-exported lazily, so ``import profiles.signing`` stays cheap::

    from profiles import load_city, check, build_school, CAIssuer

* ``profiles.blueprint`` - city + school YAML blueprints (``load_city``, ``check``)
* ``profiles.profile`` - ``build_school`` -> ``SchoolBuild`` of ``BuiltProfile``s + commands
* ``profiles.payloads`` - one builder per Apple payload type
* ``profiles.commands`` - InstallApplication / RemoveApplication / Settings
* ``profiles.schema`` - Apple's schema table and ``check_payload`` / ``check_command``
* ``profiles.issuer`` - identities for Classroom and EAP-TLS (``CAIssuer``)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_city": "profiles.blueprint.loader", "City": "profiles.blueprint.loader",
    "check": "profiles.blueprint.checking", "Problem": "profiles.blueprint.errors",
    "BlueprintError": "profiles.blueprint.errors", "Blueprint": "profiles.blueprint.models",
    "build_school": "profiles.profile", "build_blueprint": "profiles.profile",
    "SchoolBuild": "profiles.profile", "BuiltProfile": "profiles.profile",
    "CAIssuer": "profiles.issuer", "Issuer": "profiles.issuer",
    "check_payload": "profiles.schema.checker", "check_command": "profiles.schema.checker",
    "wifi_psk_profile": "profiles.wifi_profile", "device_name_command": "profiles.commands",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'profiles' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
