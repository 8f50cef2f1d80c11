"""Exceptions raised by feepay, in the style of python-stdnum.

Every error carries a human-readable ``message``; validation errors also name the
``field`` (and, for files, the ``source`` and ``line``) so that a CLI or a web page can
say exactly what was wrong and where. Nothing here knows about HTTP: ``webapp`` maps
these classes to status codes.
"""

from __future__ import annotations


class FeepayError(Exception):
    """Base class of every error feepay raises on purpose."""

    message = "feepay error"

    def __init__(self, message: str | None = None, **context: object) -> None:
        self.message = message or self.message
        self.context = context
        super().__init__(self.message)

    def to_dict(self) -> dict[str, object]:
        """A stable JSON-able form: ``{"error": class name, "message": ..., **context}``."""
        out: dict[str, object] = {"error": type(self).__name__, "message": self.message}
        out.update({k: v for k, v in self.context.items() if v is not None})
        return out


class ConfigurationError(FeepayError):
    """The process cannot start: a setting is missing or invalid (e.g. no encryption key)."""

    message = "invalid configuration"


class ValidationError(FeepayError, ValueError):
    """Input was refused. ``field`` names the offending field when there is one."""

    message = "invalid input"

    def __init__(self, message: str | None = None, *, field: str | None = None,
                 **context: object) -> None:
        self.field = field
        super().__init__(message, field=field, **context)

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidAmount(ValidationError):
    """A money amount is not a well-formed, unambiguous whole number of đồng."""

    message = "not an amount in VND"


class InvalidLength(ValidationError):
    """A code has the wrong number of characters."""

    message = "the code has an invalid length"


class InvalidFormat(ValidationError):
    """A code has characters or a prefix it may not have."""

    message = "the code has an invalid format"


class InvalidChecksum(ValidationError):
    """A code's check characters do not match: a typo or swapped characters."""

    message = "the code's check characters do not match"


class NotFound(FeepayError, LookupError):
    """The named object does not exist."""

    message = "not found"


class Conflict(FeepayError):
    """The operation contradicts the object's current state (e.g. cancelling a paid reference)."""

    message = "conflicting state"


class NoCollectionAccount(FeepayError):
    """No active collection account of the competent unit accepts these fee kinds."""

    message = "no active collection account accepts these fees"


class PermissionDenied(FeepayError):
    """The acting user's role does not allow the operation."""

    message = "permission denied"


class ParseError(ValidationError):
    """A file could not be read. Names the file, the row/line, the column and why."""

    message = "the file could not be parsed"

    def __init__(self, message: str | None = None, *, source: str | None = None,
                 line: int | None = None, column: str | None = None, **context: object) -> None:
        self.source = source
        self.line = line
        self.column = column
        super().__init__(message, field=column, source=source, line=line, column=column,
                         **context)

    def __str__(self) -> str:
        where = []
        if self.source:
            where.append(str(self.source))
        if self.line is not None:
            where.append(f"row {self.line}")
        if self.column:
            where.append(f"column '{self.column}'")
        return (", ".join(where) + ": " if where else "") + self.message


class SignatureError(FeepayError):
    """A callback's signature is missing, malformed, stale or wrong."""

    message = "invalid signature"


class MalformedCallback(ValidationError):
    """A callback could not be read: not JSON, a missing or ill-formed field, too large."""

    message = "malformed callback"


class UnknownAdapter(NotFound):
    """No callback adapter (built-in or from the ``feepay.adapters`` entry points) has this name."""

    message = "unknown adapter"
