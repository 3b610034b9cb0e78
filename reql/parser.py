"""Text -> AST. Lark's LALR parser builds the tree directly; Lark's exceptions never leave here."""

from __future__ import annotations

import math
import re
from functools import cache
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from reql import ast
from reql.errors import ReqlError, ReqlLimitError, ReqlSyntaxError

MAX_LENGTH = 10_000
MAX_DEPTH = 100
PROPERTY_NAME = re.compile(r"[a-zA-Z0-9_\-:]+")
MAX_PROPERTY_NAME_LENGTH = 63
# The magnitude of the smallest 64-bit integer: the largest integer literal that can be in range
# (once negated).
INT64_LIMIT = 2**63

_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
_CLOSERS = {"(": ")", "[": "]", "{": "}"}


def parse(text: str) -> ast.Node:
    """Parse one ReQL expression; raises ReqlSyntaxError or ReqlLimitError."""
    if len(text) > MAX_LENGTH:
        raise ReqlLimitError(
            f"the expression has {len(text):,} characters; the limit is {MAX_LENGTH:,}",
            text[:MAX_LENGTH],
        )
    if not text.strip() or _only_comments(text):
        raise ReqlSyntaxError("empty expression", text)
    _check_bracket_depth(text)
    try:
        tree = _parser().parse(text)
    except _Failure as failure:
        error = failure.error
        raise type(error)(error.message, text, error.line, error.column) from None
    except UnexpectedInput as error:
        raise _syntax_error(text, error) from None
    assert isinstance(tree, ast.Node)
    return tree


def start_of(node: ast.Node) -> tuple[int, int]:
    """Where the text of a node begins (operator nodes are positioned at their operator)."""
    while isinstance(node, ast.Binary | ast.Logical | ast.Compare | ast.Index):
        node = node.children()[0]
    return node.line, node.column


class _Failure(Exception):
    """Carries a ReqlError out of a Lark callback without Lark wrapping it."""

    def __init__(self, error: ReqlError) -> None:
        super().__init__(error.message)
        self.error = error


@cache
def _parser() -> Lark:
    grammar = (Path(__file__).parent / "grammar.lark").read_text()
    return Lark(grammar, parser="lalr", maybe_placeholders=True, transformer=_Builder())


class _Builder(Transformer[Token, ast.Node]):
    """Lark callbacks, called on each reduction, that build AST nodes bottom-up."""

    # Errors raised here carry no source text; parse() adds it.

    def _node(self, cls: type[ast.Node], where: Token | ast.Node, *args: Any) -> ast.Node:
        children = [a for a in args if isinstance(a, ast.Node)]
        for a in args:
            if isinstance(a, tuple):
                children.extend(x for x in a if isinstance(x, ast.Node))
        depth = 1 + max((c.depth for c in children), default=0)
        if isinstance(where, ast.Node):
            line, column = where.line, where.column
        else:
            line, column = where.line or 1, where.column or 1
        if depth > MAX_DEPTH:
            raise _Failure(
                ReqlLimitError(
                    f"the expression is nested deeper than {MAX_DEPTH} levels", "", line, column
                )
            )
        return cls(line, column, *args, depth=depth)

    # -- atoms ----------------------------------------------------------------------------------

    def number(self, children: list[Token]) -> ast.Node:
        (token,) = children
        return self._node(ast.Literal, token, _number(token))

    def string(self, children: list[Token]) -> ast.Node:
        (token,) = children
        return self._node(ast.Literal, token, _unescape(token))

    def property(self, children: list[Token]) -> ast.Node:
        (token,) = children
        return self._node(ast.Property, token, _property_name(token))

    def true(self, children: list[Token]) -> ast.Node:
        return self._node(ast.Literal, children[0], True)

    def false(self, children: list[Token]) -> ast.Node:
        return self._node(ast.Literal, children[0], False)

    def null(self, children: list[Token]) -> ast.Node:
        return self._node(ast.Literal, children[0], None)

    def name(self, children: list[Token]) -> ast.Node:
        (token,) = children
        return self._node(ast.Name, token, str(token))

    def arguments(self, children: list[ast.Node]) -> tuple[ast.Node, ...]:
        return tuple(children)

    def set_literal(self, children: list[Any]) -> ast.Node:
        brace, elements = children
        return self._node(ast.SetLiteral, brace, elements or ())

    def array_literal(self, children: list[Any]) -> ast.Node:
        bracket, elements = children
        return self._node(ast.ArrayLiteral, bracket, elements or ())

    # -- operators ------------------------------------------------------------------------------

    def index(self, children: list[Any]) -> ast.Node:
        target, bracket, key = children
        return self._node(ast.Index, bracket, target, key)

    def call(self, children: list[Any]) -> ast.Node:
        name, _paren, arguments = children
        return self._node(ast.Call, name, str(name), arguments or ())

    def unary(self, children: list[Any]) -> ast.Node:
        operator, operand = children
        op = "-" if operator.type == "MINUS" else "not"
        if (
            op == "-"
            and isinstance(operand, ast.Literal)
            and isinstance(operand.value, int | float)
            and not isinstance(operand.value, bool)
        ):
            # Fold `-3` into a literal, so that -9223372036854775808 is in range.
            return self._node(ast.Literal, operator, -operand.value)
        return self._node(ast.Unary, operator, op, operand)

    def binary(self, children: list[Any]) -> ast.Node:
        left, operator, right = children
        return self._node(ast.Binary, operator, str(operator), left, right)

    def logical(self, children: list[Any]) -> ast.Node:
        left, operator, right = children
        op = "and" if operator.type == "AND" else "or"
        # Flatten chains of the same operator into one node.
        if isinstance(left, ast.Logical) and left.operator == op:
            return self._node(ast.Logical, left, op, (*left.operands, right))
        return self._node(ast.Logical, operator, op, (left, right))

    def comp_op(self, children: list[Token]) -> Token:
        if len(children) == 2:
            return Token("NOT_IN", "not in", line=children[0].line, column=children[0].column)
        token = children[0]
        return Token(token.type, str(token).lower(), line=token.line, column=token.column)

    def compare(self, children: list[Any]) -> ast.Node:
        operands = tuple(children[0::2])
        operators: list[Token] = children[1::2]
        return self._node(ast.Compare, operators[0], tuple(str(t) for t in operators), operands)

    def conditional(self, children: list[Any]) -> ast.Node:
        token, condition, _then, then, _else, otherwise = children
        return self._node(ast.Conditional, token, condition, then, otherwise)

    def lambda_expr(self, children: list[Any]) -> ast.Node:
        token, *parameters, body = children
        names = tuple(_property_name(p) for p in parameters)
        return self._node(ast.Lambda, token, names, body)


def _number(token: Token) -> int | float:
    """The value of a number literal, refusing what no 64-bit integer or finite double holds.

    An integer up to 2**63 is let through: only once a leading minus has been folded in (see
    `unary`) does the checker know whether it fits. Longer integers are refused here, before
    `int()` sees them: beyond 4,300 digits it raises ValueError, and no 20-digit value fits anyway.
    """
    text = str(token)
    if any(c in text for c in ".eE"):
        # float() takes any number of digits (after the point too) and gives inf where the value
        # overflows; that is no ReQL value.
        value = float(text)
        if not math.isfinite(value):
            raise _Failure(
                ReqlLimitError(number_out_of_range(text), "", token.line or 1, token.column or 1)
            )
        return value
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(INT64_LIMIT)):
        raise _Failure(
            ReqlLimitError(integer_out_of_range(text), "", token.line or 1, token.column or 1)
        )
    return int(digits)


def integer_out_of_range(text: str) -> str:
    """The message for an integer literal that no 64-bit integer holds (`text` as written)."""
    return f"integer {_abbreviated(text, 'digits')} is out of range (64-bit integers)"


def number_out_of_range(text: str) -> str:
    """The message for a number literal too large for a double (it would be infinite)."""
    number = _abbreviated(text, "characters")
    return f"number {number} is out of range (doubles reach about 1.8e308)"


def _abbreviated(text: str, unit: str) -> str:
    # The message is one line, and a number of thousands of digits helps no one.
    if len(text) <= 24:
        return text
    return f"{text[:20]}…({len(text):,} {unit})"


def _unescape(token: Token) -> str:
    raw = str(token)[1:-1]
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i = 0
    while i < len(raw):
        char = raw[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        code = raw[i + 1]
        column = (token.column or 1) + 1 + i
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            i += 2
        elif code == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", raw[i + 2 : i + 6]):
            out.append(chr(int(raw[i + 2 : i + 6], 16)))
            i += 6
        else:
            raise _Failure(
                ReqlSyntaxError(
                    f"invalid escape '\\{code}' in a string", "", token.line or 1, column
                )
            )
    return "".join(out)


def _property_name(token: Token) -> str:
    name = str(token)[1:-1]
    if not PROPERTY_NAME.fullmatch(name) or len(name) > MAX_PROPERTY_NAME_LENGTH:
        raise _Failure(
            ReqlSyntaxError(
                f"invalid property name '{name}': names have 1 to {MAX_PROPERTY_NAME_LENGTH} "
                "characters of a-z, A-Z, 0-9, _, - and :",
                "",
                token.line or 1,
                token.column or 1,
            )
        )
    return name


def _syntax_error(text: str, error: UnexpectedInput) -> ReqlError:
    line, column = error.line or 1, error.column or 1
    if isinstance(error, UnexpectedCharacters):
        position = error.pos_in_stream or 0
        char = text[position] if position < len(text) else ""
        if char == '"':
            return ReqlSyntaxError("unclosed string", text, line, column)
        if char == "'":
            return ReqlSyntaxError("unclosed property name", text, line, column)
        return ReqlSyntaxError(f"unexpected character {char!r}", text, line, column)
    token = getattr(error, "token", None)
    if isinstance(error, UnexpectedEOF) or (token is not None and token.type == "$END"):
        opened = _unclosed_bracket(text)
        if opened is not None:
            bracket, line, column = opened
            return ReqlSyntaxError(
                f"unclosed '{bracket}': the expression ends before its '{_CLOSERS[bracket]}'",
                text,
                line,
                column,
            )
        line, column = _end_position(text)
        return ReqlSyntaxError("unexpected end of the expression", text, line, column)
    assert isinstance(error, UnexpectedToken)
    return ReqlSyntaxError(f"unexpected '{error.token}'", text, line, column)


def _unclosed_bracket(text: str) -> tuple[str, int, int] | None:
    """The innermost bracket left open at the end of the text."""
    stack, _ = _scan_brackets(text)
    return stack[-1] if stack else None


def _check_bracket_depth(text: str) -> None:
    _, too_deep = _scan_brackets(text)
    if too_deep is not None:
        _, line, column = too_deep
        raise ReqlLimitError(
            f"brackets are nested deeper than {MAX_DEPTH} levels", text, line, column
        )


def _scan_brackets(
    text: str,
) -> tuple[list[tuple[str, int, int]], tuple[str, int, int] | None]:
    """Brackets still open at the end, and the first one opened beyond MAX_DEPTH (strings and
    comments skipped)."""
    stack: list[tuple[str, int, int]] = []
    too_deep: tuple[str, int, int] | None = None
    line, column, i = 1, 1, 0
    quote: str | None = None
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\" and quote == '"':
                i += 2
                column += 2
                continue
            if char == quote or char == "\n":
                quote = None
        elif char in "\"'":
            quote = char
        elif text.startswith("//", i):
            end = text.find("\n", i)
            if end < 0:
                break
            column += end - i
            i = end
            continue
        elif char in _CLOSERS:
            stack.append((char, line, column))
            if len(stack) > MAX_DEPTH and too_deep is None:
                too_deep = stack[-1]
        elif char in ")]}" and stack:
            stack.pop()
        if char == "\n":
            line, column = line + 1, 1
        else:
            column += 1
        i += 1
    return stack, too_deep


def _end_position(text: str) -> tuple[int, int]:
    stripped = text.rstrip()
    lines = stripped.split("\n")
    return len(lines), len(lines[-1]) + 1


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.strip().startswith("//") for line in text.split("\n"))
