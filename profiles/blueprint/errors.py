"""Problems found in a blueprint, and the error that carries them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mdm.errors import ValidationFailed
from profiles.schema.checker import _fmt as format_path


@dataclass(frozen=True)
class Problem:
    """One finding: where (file, line, key path) and what, with a suggestion when there is one."""

    file: str | None
    line: int | None
    key: str
    message: str
    severity: str = "error"  # "error" | "warning"
    suggestion: str | None = None

    def __str__(self) -> str:
        where = f"{self.file or '<blueprint>'}:{self.line if self.line is not None else '?'}"
        text = f"{where}: {self.severity}: {self.key or '(top level)'}: {self.message}"
        if self.suggestion and self.suggestion not in self.message:
            text += f" (did you mean {self.suggestion!r}?)"
        return text

    def as_dict(self) -> dict:
        return asdict(self)


class BlueprintError(ValidationFailed):
    """A blueprint could not be loaded or built; ``problems`` says where and why."""

    code = "blueprint_invalid"

    def __init__(self, problems: list[Problem] | Problem) -> None:
        if isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        first = str(self.problems[0]) if self.problems else "invalid blueprint"
        more = len(self.problems) - 1
        message = first + (f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else "")
        super().__init__(message, details={"problems": [p.as_dict() for p in self.problems]})


def errors_only(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def format_key(path: tuple) -> str:
    """('wifi', 0, 'ssid') -> 'wifi[0].ssid'; keys with dots are quoted: notifications.pupil["a.b"]."""
    return format_path(path)
