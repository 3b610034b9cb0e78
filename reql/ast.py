"""The abstract syntax tree of ReQL: frozen dataclasses, each with its 1-based line and column."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

LiteralValue: TypeAlias = int | float | str | bool | None


@dataclass(frozen=True)
class Node:
    line: int
    column: int
    # How deep the subtree goes; kept out of comparisons so that trees compare by content.
    depth: int = field(default=1, compare=False, repr=False, kw_only=True)

    @property
    def kind(self) -> str:
        """The node's name in snake case, which names the checker's and compiler's methods."""
        return _snake(type(self).__name__)

    def children(self) -> tuple[Node, ...]:
        return ()


@dataclass(frozen=True)
class Literal(Node):
    """A number, string, boolean or null."""

    value: LiteralValue


@dataclass(frozen=True)
class SetLiteral(Node):
    """`{a, b}`: unordered, duplicates collapse."""

    elements: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.elements


@dataclass(frozen=True)
class ArrayLiteral(Node):
    """`[a, b]`: ordered."""

    elements: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.elements


@dataclass(frozen=True)
class Property(Node):
    """`'name'`: a property of the candidate, or a lambda variable."""

    name: str


@dataclass(frozen=True)
class Name(Node):
    """A bare identifier: `context_item`, `context_user`, or a function called without `()`."""

    name: str


@dataclass(frozen=True)
class Index(Node):
    """`target[key]`: dictionary access (also `context_item["p"]`) or array element."""

    target: Node
    key: Node

    def children(self) -> tuple[Node, ...]:
        return (self.target, self.key)


@dataclass(frozen=True)
class Call(Node):
    """`name(arguments)`."""

    name: str
    arguments: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.arguments


@dataclass(frozen=True)
class Lambda(Node):
    """`lambda 'x': body` (or several variables); only as a function argument."""

    parameters: tuple[str, ...]
    body: Node

    def children(self) -> tuple[Node, ...]:
        return (self.body,)


@dataclass(frozen=True)
class Unary(Node):
    """`-x` or `not x`."""

    operator: str
    operand: Node

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)


@dataclass(frozen=True)
class Binary(Node):
    """Arithmetic and set operators: `+ - * / % &`."""

    operator: str
    left: Node
    right: Node

    def children(self) -> tuple[Node, ...]:
        return (self.left, self.right)


@dataclass(frozen=True)
class Logical(Node):
    """`a and b and c` or `a or b`: one node for the whole chain, so long chains stay shallow."""

    operator: str
    operands: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.operands


@dataclass(frozen=True)
class Compare(Node):
    """A comparison chain `a < b <= c`: `operators[i]` sits between operands i and i+1."""

    operators: tuple[str, ...]
    operands: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.operands


@dataclass(frozen=True)
class Conditional(Node):
    """`if condition then a else b`."""

    condition: Node
    then: Node
    otherwise: Node

    def children(self) -> tuple[Node, ...]:
        return (self.condition, self.then, self.otherwise)


def _snake(name: str) -> str:
    out = []
    for i, char in enumerate(name):
        if char.isupper() and i:
            out.append("_")
        out.append(char.lower())
    return "".join(out)
