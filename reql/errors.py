"""ReQL's errors: each names the problem and the place, with a caret under it."""

from __future__ import annotations


class ReqlError(Exception):
    """An expression that cannot be parsed, checked or evaluated.

    `line` and `column` are 1-based. `str(error)` is the full report: the message, the position and
    the offending line of the expression with a caret under the place.
    """

    kind = "error"

    def __init__(self, message: str, source: str, line: int = 1, column: int = 1) -> None:
        self.message = message
        self.source = source
        self.line = max(line, 1)
        self.column = max(column, 1)
        super().__init__(self.report())

    @property
    def snippet(self) -> str:
        """The line of the expression where the problem is, and a caret under it."""
        lines = self.source.split("\n")
        text = lines[self.line - 1] if self.line <= len(lines) else ""
        if len(text) > 120:
            # Keep the caret in view on very long lines.
            start = max(0, self.column - 60)
            text = text[start : start + 120]
            return f"{text}\n{' ' * (self.column - 1 - start)}^"
        return f"{text}\n{' ' * (self.column - 1)}^"

    def report(self) -> str:
        return f"ReQL: {self.message} at {self.line}:{self.column}\n{self.snippet}"


class ReqlSyntaxError(ReqlError):
    """The text is not a ReQL expression (unexpected token, unclosed string or bracket)."""

    kind = "syntax"


class ReqlNameError(ReqlError):
    """An unknown property, function or context, or a context that the request does not have."""

    kind = "name"


class ReqlUnknownProperty(ReqlNameError):
    """A property that the entity (or the context) does not have."""


class ReqlTypeError(ReqlError):
    """Operand or argument types that do not fit, or a result of the wrong type for its use."""

    kind = "type"


class ReqlLimitError(ReqlError):
    """An expression beyond what the server accepts: longer, more deeply nested or more costly
    to evaluate than the limits allow, or a number literal out of range."""

    kind = "limit"


class ReqlEvaluationError(ReqlError):
    """A value found invalid only when evaluated (an integer overflow, a bad regex)."""

    kind = "evaluation"
