"""A static bound on the work an expression causes per candidate, checked before it compiles.

A lambda function (`map`, `select`, `exists`, and any function with a lambda argument) evaluates
its body once per element of its collection, so nested lambdas multiply: three nested `map`s over
array literals of 160 numbers evaluate the innermost body 4,096,000 times for every candidate,
which DuckDB pays for in seconds and gigabytes. Nothing else in ReQL multiplies work, so counting
element evaluations through the lambdas bounds what an expression can cost.

The unit is one *element evaluation*: an operator, function call or value evaluated once, or one
element of a set or array visited once (built, searched, compared). One evaluation of a lambda
call counts its collection's size times its body's estimate. Collection literals count each of
their elements, so large literals add up too. A set built per candidate (the value of `map`, a
union, a set literal of computed elements) counts SET_ELEMENT_COST per element, because DuckDB
deduplicates it with a hash table per candidate, which costs about that many plain evaluations.

Collection sizes are exact for literals, and bounded by the text for `split` of a literal string.
Where the size is not known before evaluation (a set or array property, a context value, `split`
of a property, a plugin function's result), the estimate assumes ASSUMED_SIZE elements; for
`user_interactions(user, types, n)` it assumes ASSUMED_INTERACTIONS, or `n` where a literal `n` is
smaller.
"""

from __future__ import annotations

from dataclasses import dataclass

from reql import ast
from reql.checker import Checked
from reql.errors import ReqlLimitError
from reql.parser import start_of
from reql.types import Kind

MAX_COST = 20_000
"""The most element evaluations per candidate that an expression may cost (see the module doc).

Measured with DuckDB 2.0 over 2,000 candidates (CPU time, on a shared two-core machine),
expressions just within this bound take 0.03 to 0.4 s: the slowest build a string or a set per
element, such as a map over 770 literal strings. At 100,000 the same shapes take about 2 s.
"""

MAX_LAMBDA_DEPTH = 3
"""The most lambda functions nested in each other's bodies. (Three levels fit MAX_COST only over
collections of about eight elements; deeper nesting is almost surely a mistake.)"""

ASSUMED_SIZE = 20
"""The elements assumed for a set or array whose size is unknown when compiling: about what the
sets of items and users usually hold (tags, categories, cities). Where they hold more, the
expressions that go over them cost more than estimated."""

ASSUMED_INTERACTIONS = 100
"""The elements assumed for `user_interactions()` without a smaller literal `n`: a user with a few
months of interactions of the types asked for."""

SET_ELEMENT_COST = 20
"""What one element of a set built per candidate counts (DuckDB's list_distinct takes ~400 ns an
element, where an arithmetic lambda body takes ~15 ns and a string concatenation ~90 ns)."""

READ_COST = 100
"""What a call of a function that reads another table (`num_item_purchases`, `item_values`,
`user_interactions`) counts beyond its arguments: a correlated lookup of about that many rows."""


@dataclass(frozen=True)
class Estimate:
    """What one evaluation of a node costs, and how large a collection it gives."""

    cost: int
    """Element evaluations, for one evaluation of the node."""
    size: int = 0
    """For a set or array: about how many elements it holds (0 for other values)."""
    element_size: int = 0
    """For a set or array of sets or arrays: about how many elements each of those holds."""
    assumed: bool = False
    """Whether the estimate rests on an assumed size somewhere (which the error message says)."""


def check_cost(
    checked: Checked, *, max_cost: int = MAX_COST, max_lambda_depth: int = MAX_LAMBDA_DEPTH
) -> Estimate:
    """Estimate what a checked expression costs per candidate, and refuse it (ReqlLimitError) if
    lambda functions nest deeper than `max_lambda_depth` (at the call one level too deep), or if
    the cost exceeds `max_cost` (at the outermost lambda call that exceeds it, or else at the
    start of the expression)."""
    estimator = _Estimator(checked, max_lambda_depth)
    total = estimator.visit(checked.tree)
    if total.cost <= max_cost:
        return total
    for call in estimator.lambda_calls:
        if call.estimate.cost > max_cost:
            what = "nested lambdas in" if call.nested else "the lambda of"
            verb = "evaluate" if call.nested else "evaluates"
            raise ReqlLimitError(
                f"expression too costly: {what} this {call.name}() {verb} about "
                f"{call.estimate.cost:,} elements per candidate{_assuming(call.estimate)}; "
                f"the limit is {max_cost:,}",
                checked.source,
                call.node.line,
                call.node.column,
            )
    # Lambda calls each within the limit but not together, or large literals and set operations.
    line, column = start_of(checked.tree)
    raise ReqlLimitError(
        f"expression too costly: it evaluates about {total.cost:,} elements per candidate"
        f"{_assuming(total)}; the limit is {max_cost:,}",
        checked.source,
        line,
        column,
    )


@dataclass
class _LambdaCall:
    """A call of a lambda function, as found in the tree."""

    node: ast.Node
    name: str
    estimate: Estimate = Estimate(0)
    nested: bool = False  # whether its lambda holds more lambda calls


def _assuming(estimate: Estimate) -> str:
    if not estimate.assumed:
        return ""
    return (
        f" (assuming {ASSUMED_SIZE} elements in a set or array of unknown size, "
        f"{ASSUMED_INTERACTIONS} in user_interactions())"
    )


def _dedup(estimate: Estimate) -> int:
    """What deduplicating a set built per candidate costs (its elements, and theirs if sets)."""
    return SET_ELEMENT_COST * (estimate.size + estimate.size * estimate.element_size)


class _Estimator:
    """One `<node kind>_cost` method per node kind, each returning the node's Estimate (a kind
    without one counts as an operator over its children)."""

    def __init__(self, checked: Checked, max_lambda_depth: int) -> None:
        self.checked = checked
        self.max_lambda_depth = max_lambda_depth
        # The estimates of the lambda variables in scope, one dict per enclosing lambda, indexed
        # as the checker's Info.variable numbers them.
        self.scopes: list[dict[str, Estimate]] = []
        # Every lambda call, in pre-order (outermost first), with its estimate once known.
        self.lambda_calls: list[_LambdaCall] = []

    def visit(self, node: ast.Node) -> Estimate:
        method = getattr(self, f"{node.kind}_cost", None)
        if method is None:
            return self._generic(node, node.children())
        estimate: Estimate = method(node)
        return estimate

    def _is_collection(self, node: ast.Node) -> bool:
        return self.checked[node].type.is_collection

    def _is_set(self, node: ast.Node) -> bool:
        return self.checked[node].type.kind is Kind.SET

    def _unknown(self, node: ast.Node, cost: int, assumed: bool = False) -> Estimate:
        """A node whose value, if a collection, has a size not known when compiling."""
        if not self._is_collection(node):
            return Estimate(cost, assumed=assumed)
        return Estimate(cost, ASSUMED_SIZE, self._element_size(node), assumed=True)

    def _element_size(self, node: ast.Node) -> int:
        """The size assumed for the elements of a collection: 0 unless they are collections."""
        element = self.checked[node].type.element
        return ASSUMED_SIZE if element is not None and element.is_collection else 0

    def _generic(self, node: ast.Node, children: tuple[ast.Node, ...]) -> Estimate:
        """One evaluation of the node, its operands', and a pass over each collection operand."""
        parts = [self.visit(c) for c in children]
        cost = 1 + sum(p.cost + p.size for p in parts)
        return self._unknown(node, cost, any(p.assumed for p in parts))

    # -- leaves ---------------------------------------------------------------------------------

    def literal_cost(self, node: ast.Literal) -> Estimate:
        return Estimate(1)

    def set_literal_cost(self, node: ast.SetLiteral) -> Estimate:
        estimate = self._collection(node.elements)
        if all(isinstance(e, ast.Literal) and e.value is not None for e in node.elements):
            return estimate  # bound as one parameter, deduplicated while compiling
        return Estimate(
            estimate.cost + _dedup(estimate),
            estimate.size,
            estimate.element_size,
            estimate.assumed,
        )

    def array_literal_cost(self, node: ast.ArrayLiteral) -> Estimate:
        return self._collection(node.elements)

    def _collection(self, elements: tuple[ast.Node, ...]) -> Estimate:
        # Each element counts (at least one unit), so the literal's size is part of its cost.
        parts = [self.visit(e) for e in elements]
        return Estimate(
            1 + sum(p.cost for p in parts),
            len(parts),
            max((p.size for p in parts), default=0),
            any(p.assumed for p in parts),
        )

    def property_cost(self, node: ast.Property) -> Estimate:
        variable = self.checked[node].variable
        if variable is not None:
            return self.scopes[variable][node.name]
        return self._unknown(node, 1)

    def name_cost(self, node: ast.Name) -> Estimate:
        return self._call(node, ())

    # -- access and calls -----------------------------------------------------------------------

    def index_cost(self, node: ast.Index) -> Estimate:
        if self.checked[node].context is not None:
            # context_item["p"]: a bound value (the checker visits only the key).
            return self._unknown(node, 1 + self.visit(node.key).cost)
        target, key = self.visit(node.target), self.visit(node.key)
        cost = 1 + target.cost + key.cost
        if self._is_collection(node) and target.element_size:
            # An element of an array of arrays: as large as the target's elements.
            return Estimate(
                cost, target.element_size, self._element_size(node), assumed=target.assumed
            )
        return self._unknown(node, cost, target.assumed or key.assumed)

    def call_cost(self, node: ast.Call) -> Estimate:
        return self._call(node, node.arguments)

    def _call(self, node: ast.Node, arguments: tuple[ast.Node, ...]) -> Estimate:
        function = self.checked[node].function
        assert function is not None
        if function.lambda_argument is not None and function.lambda_argument < len(arguments):
            return self._lambda_call(node, function.name, arguments, function.lambda_argument)
        parts = [self.visit(a) for a in arguments]
        cost = 1 + sum(p.cost + p.size for p in parts)
        if function.reads_tables:
            cost += READ_COST
        assumed = any(p.assumed for p in parts)
        if function.name == "reduce" and len(parts) > 1 and parts[1].element_size:
            # Folding n sets of m elements with "+" builds a set at each step, each up to the
            # whole union: about n * n * m / 2 elements deduplicated.
            collection = parts[1]
            cost += (
                SET_ELEMENT_COST * collection.size * collection.size * collection.element_size // 2
            )
        if not self._is_collection(node):
            return Estimate(cost, assumed=assumed)
        size, size_assumed = self._result_size(function.name, arguments, parts)
        return Estimate(cost, size, self._element_size(node), assumed or size_assumed)

    def _result_size(
        self, name: str, arguments: tuple[ast.Node, ...], parts: list[Estimate]
    ) -> tuple[int, bool]:
        """The size of a function's collection result, and whether it is assumed."""
        if name == "split":
            text = arguments[0]
            if isinstance(text, ast.Literal) and isinstance(text.value, str):
                # At most one part more than there are characters (an empty separator splits
                # into characters).
                return len(text.value) + 1, False
        elif name == "user_interactions":
            count = arguments[2] if len(arguments) == 3 else None
            if (
                isinstance(count, ast.Literal)
                and isinstance(count.value, int)
                and not isinstance(count.value, bool)
                and count.value < ASSUMED_INTERACTIONS
            ):
                return max(0, count.value), False
            # (A larger n gives no user more interactions than assumed.)
            return ASSUMED_INTERACTIONS, True
        elif name == "reduce":
            # "+" unites the sets, "&" intersects them.
            collection = parts[1]
            if isinstance(arguments[0], ast.Literal) and arguments[0].value == "&":
                return collection.element_size, collection.assumed
            return collection.size * collection.element_size, collection.assumed
        elif name == "coalesce":
            return max(p.size for p in parts), any(p.assumed for p in parts)
        return ASSUMED_SIZE, True

    def _lambda_call(
        self, node: ast.Node, name: str, arguments: tuple[ast.Node, ...], position: int
    ) -> Estimate:
        lambda_node = arguments[position]
        assert isinstance(lambda_node, ast.Lambda)
        depth = len(self.scopes) + 1
        if depth > self.max_lambda_depth:
            raise ReqlLimitError(
                f"lambda functions are nested {depth} deep; the limit is {self.max_lambda_depth}",
                self.checked.source,
                node.line,
                node.column,
            )
        call = _LambdaCall(node, name)
        self.lambda_calls.append(call)
        # The other arguments are evaluated once, outside the lambda's scope.
        others = [(a, self.visit(a)) for i, a in enumerate(arguments) if i != position]
        # The collection the lambda goes over: map, select and exists have exactly one; for a
        # plugin's function, the largest collection argument (or a single value if none).
        collections = [e for a, e in others if self._is_collection(a)]
        over = max(collections, key=lambda e: e.size, default=Estimate(0, 1))
        # The element variable is as large as the collection's elements (if they are sets).
        element = Estimate(1, over.element_size, 0, over.assumed)
        self.scopes.append(dict(zip(lambda_node.parameters, (element, Estimate(1)), strict=False)))
        calls_before = len(self.lambda_calls)
        try:
            body = self.visit(lambda_node.body)
        finally:
            self.scopes.pop()
        call.nested = len(self.lambda_calls) > calls_before
        cost = 1 + sum(e.cost + e.size for _, e in others) + over.size * body.cost
        assumed = over.assumed or body.assumed or any(e.assumed for _, e in others)
        estimate = Estimate(cost, 0, 0, assumed)
        if self._is_collection(node):
            estimate = Estimate(cost, over.size, body.size, assumed)
            if name == "map":
                # map's values are deduplicated per candidate (and sorted first if sets); select
                # only keeps some elements of its collection.
                estimate = Estimate(cost + _dedup(estimate), over.size, body.size, assumed)
        call.estimate = estimate
        return estimate

    # -- operators ------------------------------------------------------------------------------

    def unary_cost(self, node: ast.Unary) -> Estimate:
        return self._generic(node, node.children())

    def binary_cost(self, node: ast.Binary) -> Estimate:
        left, right = self.visit(node.left), self.visit(node.right)
        cost = 1 + left.cost + left.size + right.cost + right.size
        assumed = left.assumed or right.assumed
        if not self._is_collection(node):
            return Estimate(cost, assumed=assumed)
        operands = [
            e for n, e in ((node.left, left), (node.right, right)) if self._is_collection(n)
        ]
        if node.operator == "+":
            size = sum(e.size for e in operands)
        elif node.operator == "-":
            size = left.size
        else:
            size = min(e.size for e in operands)
        element_size = max(left.element_size, right.element_size)
        if self._is_set(node):
            # Union and difference of sets are deduplicated per candidate.
            cost += sum(_dedup(e) for e in operands)
        return Estimate(cost, size, element_size, assumed)

    def logical_cost(self, node: ast.Logical) -> Estimate:
        return self._generic(node, node.children())

    def compare_cost(self, node: ast.Compare) -> Estimate:
        parts = [self.visit(o) for o in node.operands]
        cost = 1 + sum(p.cost + p.size for p in parts)
        for i, operator in enumerate(node.operators):
            left, right = node.operands[i], node.operands[i + 1]
            if not (self._is_collection(left) and self._is_collection(right)):
                continue
            if operator in ("==", "!=") and (self._is_set(left) or self._is_set(right)):
                # Sets compare for equality sorted and deduplicated, per candidate.
                cost += _dedup(parts[i]) + _dedup(parts[i + 1])
            elif operator in ("in", "not in"):
                # A set looked up in a set of sets: each of those is sorted and deduplicated.
                cost += _dedup(parts[i]) + _dedup(parts[i + 1])
        return Estimate(cost, assumed=any(p.assumed for p in parts))

    def conditional_cost(self, node: ast.Conditional) -> Estimate:
        # DuckDB evaluates, for each candidate, only the branch that the condition picks.
        condition = self.visit(node.condition)
        then, otherwise = self.visit(node.then), self.visit(node.otherwise)
        return Estimate(
            1 + condition.cost + max(then.cost, otherwise.cost),
            max(then.size, otherwise.size),
            max(then.element_size, otherwise.element_size),
            condition.assumed or then.assumed or otherwise.assumed,
        )
