"""Apple's device-management schema, derived into a compact table, and a checker for it."""

from profiles.schema.checker import Issue, check_command, check_payload, errors, schema

__all__ = ["Issue", "check_command", "check_payload", "errors", "schema"]
