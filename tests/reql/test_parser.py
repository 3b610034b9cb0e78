"""The parser: trees with positions, precedence, and errors with line, column and caret."""

from __future__ import annotations

import pytest

from reql import ReqlLimitError, ReqlSyntaxError, parse
from reql.ast import (
    Binary,
    Call,
    Compare,
    Conditional,
    Index,
    Lambda,
    Literal,
    Logical,
    Name,
    Property,
    SetLiteral,
    Unary,
)


def shape(node: object) -> object:
    """A tree without positions, to compare structure."""
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Property):
        return f"'{node.name}'"
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Binary):
        return (node.operator, shape(node.left), shape(node.right))
    if isinstance(node, Unary):
        return (node.operator, shape(node.operand))
    if isinstance(node, Logical):
        return (node.operator, *[shape(o) for o in node.operands])
    if isinstance(node, Compare):
        out: list[object] = [shape(node.operands[0])]
        for operator, operand in zip(node.operators, node.operands[1:], strict=True):
            out += [operator, shape(operand)]
        return tuple(out)
    if isinstance(node, Conditional):
        return ("if", shape(node.condition), shape(node.then), shape(node.otherwise))
    if isinstance(node, Call):
        return (node.name, *[shape(a) for a in node.arguments])
    if isinstance(node, Index):
        return ("[]", shape(node.target), shape(node.key))
    if isinstance(node, SetLiteral):
        return {"set": [shape(e) for e in node.elements]}.__repr__()
    if isinstance(node, Lambda):
        return ("lambda", node.parameters, shape(node.body))
    raise AssertionError(node)


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("1 + 2 * 3", ("+", 1, ("*", 2, 3))),
        ("(1 + 2) * 3", ("*", ("+", 1, 2), 3)),
        ("1 - 2 - 3", ("-", ("-", 1, 2), 3)),
        ("-'a' * 2", ("*", ("-", "'a'"), 2)),
        ("-f(1)[0]", ("-", ("[]", ("f", 1), 0))),
        ("'a' & 'b' + 'c'", ("+", ("&", "'a'", "'b'"), "'c'")),
        ("not 'a' == 1", ("not", ("'a'", "==", 1))),
        ("! 'a' and 'b'", ("and", ("not", "'a'"), "'b'")),
        ("'a' or 'b' and 'c'", ("or", "'a'", ("and", "'b'", "'c'"))),
        ("'a' || 'b' || 'c'", ("or", "'a'", "'b'", "'c'")),
        ("'a' && 'b' AND 'c'", ("and", "'a'", "'b'", "'c'")),
        ("1 < 'x' <= 10", (1, "<", "'x'", "<=", 10)),
        ("'x' not in {1}", ("'x'", "not in", "{'set': [1]}")),
        ("'x' NOT IN 'y'", ("'x'", "not in", "'y'")),
        ("if 'a' then 1 else 2 + 3", ("if", "'a'", 1, ("+", 2, 3))),
        ("IF 'a' THEN 1 ELSE if 'b' then 2 else 3", ("if", "'a'", 1, ("if", "'b'", 2, 3))),
        ("now", "now"),
        ("now()", ("now",)),
        ('context_item["p"]', ("[]", "context_item", "p")),
        (
            "map(lambda 'x', 'i': 'x' + 'i', 'a')",
            ("map", ("lambda", ("x", "i"), ("+", "'x'", "'i'")), "'a'"),
        ),
        ("1e9 + 1.23e+3 + 123E-2 + .5", ("+", ("+", ("+", 1e9, 1230.0), 1.23), 0.5)),
        ('"a\\"b\\\\c\\n\\t\\u0041"', 'a"b\\c\n\tA'),
        ("TRUE or False or NULL", ("or", True, False, None)),
        ("1 // a comment\n + 2 // another", ("+", 1, 2)),
        ("-9223372036854775808", -9223372036854775808),
    ],
)
def test_trees(text: str, tree: object) -> None:
    assert shape(parse(text)) == tree


def test_nodes_carry_their_position() -> None:
    tree = parse("'a' > 1 and\n  size('b') == 2")
    assert isinstance(tree, Logical)
    second = tree.operands[1]
    assert isinstance(second, Compare)
    call = second.operands[0]
    assert (call.line, call.column) == (2, 3)
    assert (second.line, second.column) == (2, 13)  # operators are positioned at the operator


@pytest.mark.parametrize(
    ("text", "message", "line", "column"),
    [
        ("'a' > ", "unexpected end of the expression", 1, 6),
        ("'a' >> 1", "unexpected '>'", 1, 6),
        ("{1, 2", "unclosed '{'", 1, 1),
        ("size(['a', 'b')", "unexpected ')'", 1, 15),
        ("f(\n  [1, 2", "unclosed '['", 2, 3),
        ('"abc', "unclosed string", 1, 1),
        ("'abc", "unclosed property name", 1, 1),
        ("'a b' == 1", "invalid property name 'a b'", 1, 1),
        ('"\\x"', "invalid escape", 1, 2),
        ("1 # 2", "unexpected character '#'", 1, 3),
        ("   ", "empty expression", 1, 1),
        ("lambda 'x': 1 + ", "unexpected end", 1, 16),
    ],
)
def test_syntax_errors(text: str, message: str, line: int, column: int) -> None:
    with pytest.raises(ReqlSyntaxError) as caught:
        parse(text)
    error = caught.value
    assert message in error.message
    assert (error.line, error.column) == (line, column)
    source_line = text.split("\n")[line - 1]
    assert str(error) == (
        f"ReQL: {error.message} at {line}:{column}\n{source_line}\n{' ' * (column - 1)}^"
    )


def test_limits() -> None:
    # `and` and `or` chains are one node however long; other operators nest one level each.
    chain = parse(" and ".join(["true"] * 1000))
    assert isinstance(chain, Logical)
    assert len(chain.operands) == 1000
    with pytest.raises(ReqlLimitError, match="nested deeper than 100"):
        parse("1" + " + 1" * 100)
    with pytest.raises(ReqlLimitError, match="10,000"):
        parse("1" * 10_001)
    with pytest.raises(ReqlLimitError, match="brackets are nested deeper than 100") as caught:
        parse("(" * 101 + "1" + ")" * 101)
    assert (caught.value.line, caught.value.column) == (1, 101)
    assert shape(parse("(" * 100 + "1" + ")" * 100)) == 1
    with pytest.raises(ReqlLimitError, match="nested deeper than 100"):
        parse("not " * 101 + "true")
    parse("not " * 99 + "true")
