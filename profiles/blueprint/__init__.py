"""School blueprints: a city-wide ``base.yaml`` and ``schools/<id>.yaml`` files that inherit it.

See ``README.md`` in this directory for the YAML layout and inheritance rules.
"""

from profiles.blueprint.checking import check, check_city
from profiles.blueprint.errors import BlueprintError, Problem
from profiles.blueprint.loader import City, load_city
from profiles.blueprint.models import Blueprint

__all__ = ["Blueprint", "BlueprintError", "City", "Problem", "check", "check_city", "load_city"]
