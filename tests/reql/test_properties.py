"""Property-based tests of ReQL: whatever the text, compiling it gives a result or a ReqlError
with a position and a caret, and evaluating what compiles gives values or a 400, never a crash.

Expressions come from a small grammar over the shop's properties (tests/reql/shop.py): well-typed
ones, the same with operand types mixed up, and random text made of ReQL's tokens or of anything.
Every test is derandomized, so a run is reproducible.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reql
from reql import types as rt
from server.serving.expressions import BadExpression, Context, catalog_for
from server.serving.reql_engine import ExpressionEngine
from storage.database import Database
from storage.schema import Schema
from tests.reql.shop import build_shop
from tests.serving import RunningServer

SETTINGS = settings(
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HTTP_SETTINGS = settings(
    SETTINGS,
    max_examples=400,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
ITEM_IDS = ["i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "no-such-item"]
CARET = re.compile(r" *\^")


# -- the grammar ----------------------------------------------------------------------------------


class T(Enum):
    """The types that the generator writes expressions of."""

    INT = "int"
    DOUBLE = "double"
    TIMESTAMP = "timestamp"
    STRING = "string"
    BOOLEAN = "boolean"
    STRING_SET = "set of strings"
    INT_SET = "set of ints"
    STRING_ARRAY = "array of strings"
    INTERACTION = "interaction"  # a dictionary; only ever a lambda variable


VALUE_TYPES = [t for t in T if t is not T.INTERACTION]
NUMBERS = (T.INT, T.DOUBLE)
COLLECTIONS = (T.STRING_SET, T.INT_SET, T.STRING_ARRAY)
# What the checker must type each generated expression as (a null operand may turn an int
# into a double, or a timestamp into a number).
NUMERIC_KINDS = {rt.Kind.INT, rt.Kind.DOUBLE, rt.Kind.TIMESTAMP}
KINDS = {
    T.INT: NUMERIC_KINDS,
    T.DOUBLE: NUMERIC_KINDS,
    T.TIMESTAMP: NUMERIC_KINDS,
    T.STRING: {rt.Kind.STRING},
    T.BOOLEAN: {rt.Kind.BOOLEAN},
    T.STRING_SET: {rt.Kind.SET},
    T.INT_SET: {rt.Kind.SET},
    T.STRING_ARRAY: {rt.Kind.ARRAY},
}

ITEM_PROPERTIES: dict[T, list[str]] = {
    T.INT: ["year"],
    T.DOUBLE: ["price", "lat", "lon"],
    T.TIMESTAMP: ["published"],
    T.STRING: ["title", "brand", "category", "itemId", "image"],
    T.BOOLEAN: ["in_stock", "parental_advisory"],
    T.STRING_SET: ["tags", "labels", "cities"],
    T.STRING_ARRAY: ["gallery"],
}
USER_PROPERTIES: dict[T, list[str]] = {
    T.INT: ["age"],
    T.DOUBLE: ["avg_spend", "lat", "lon"],
    T.STRING: ["city", "userId"],
    T.BOOLEAN: ["vip"],
    T.STRING_SET: ["topics"],
}
INTERACTION_FIELDS: dict[T, list[str]] = {
    T.STRING: ["itemId", "userId", "type"],
    T.TIMESTAMP: ["timestamp"],
}
INTERACTION_KINDS = [
    "detail_views",
    "purchases",
    "ratings",
    "cart_additions",
    "bookmarks",
    "view_portions",
]


@dataclass(frozen=True)
class Scope:
    """What an expression may use: the contexts and the lambda variables in scope."""

    context_item: bool = False
    context_user: bool = False
    variables: tuple[tuple[str, T], ...] = ()

    def with_variable(self, name: str, type_: T) -> Scope:
        return Scope(self.context_item, self.context_user, (*self.variables, (name, type_)))


def string_literal(text: str, escape_all: bool = False) -> str:
    """A ReQL string literal holding `text`."""
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif char == "\n":
            out.append("\\n")
        elif escape_all and ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def number_literal(value: float) -> str:
    text = repr(value)
    return text if value >= 0 else f"({text})"


Production = Callable[[st.DrawFn], str]
"""A rule of the grammar: draws the text of one expression."""


def drawn(strategy: st.SearchStrategy[str]) -> Production:
    return lambda draw: draw(strategy)


def pick(*options: str) -> Production:
    return drawn(st.sampled_from(options))


def keyword(word: str) -> Production:
    """Keywords are case-insensitive."""
    return pick(word, word.upper(), word.capitalize())


def one(*productions: Production) -> Production:
    return lambda draw: draw(st.sampled_from(productions))(draw)


def fmt(template: str, *parts: Production) -> Production:
    """`template` with each `{}` filled by its part, drawn left to right."""
    return lambda draw: template.format(*(part(draw) for part in parts))


def call(name: str, *arguments: Production) -> Production:
    return fmt(name + "(" + ", ".join("{}" for _ in arguments) + ")", *arguments)


def infix(operators: list[str], left: Production, right: Production) -> Production:
    return fmt("({} {} {})", left, pick(*operators), right)


def collection(
    opening: str, closing: str, element: Production, max_size: int = 4, min_size: int = 0
) -> Production:
    def production(draw: st.DrawFn) -> str:
        count = draw(st.integers(min_size, max_size))
        return opening + ", ".join(element(draw) for _ in range(count)) + closing

    return production


SHORT_TEXT = st.one_of(
    st.sampled_from(["", "acme", "Prague", "red", "summer", "Red Shoes", "sale", " ", "x"]),
    st.text(max_size=8),
)
INTS = st.one_of(
    st.integers(-1000, 3000),
    # (not -2**63: the generator may negate it)
    st.sampled_from([0, 1, -1, 2**31, 2**62, 2**63 - 1, -(2**63) + 1]),
)
DOUBLES = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False),
)
STRING = drawn(st.tuples(SHORT_TEXT, st.booleans()).map(lambda p: string_literal(*p)))
INT = drawn(INTS.map(number_literal))
DOUBLE = drawn(DOUBLES.map(number_literal))


class Grammar:
    """Expression text of each type; `typed=False` mixes operand types up."""

    def __init__(self, typed: bool) -> None:
        self.typed = typed

    def expression(self, draw: st.DrawFn, type_: T, depth: int, scope: Scope) -> str:
        # Shrinks towards leaves: choice 0 is a leaf.
        if depth <= 0 or draw(st.integers(0, 3)) == 0:
            productions = self.leaves(type_, scope)
        else:
            productions = self.compounds(type_, depth, scope)
        return draw(st.sampled_from(productions))(draw)

    def child(self, type_: T, depth: int, scope: Scope) -> Production:
        """An operand of type `type_`, or, in an ill-typed grammar, maybe of another type."""

        def production(draw: st.DrawFn) -> str:
            wanted = type_
            if not self.typed and draw(st.booleans()):
                wanted = draw(st.sampled_from(VALUE_TYPES))
            return self.expression(draw, wanted, depth - 1, scope)

        return production

    # -- leaves ---------------------------------------------------------------------------------

    def leaves(self, type_: T, scope: Scope) -> list[Production]:
        found: list[Production] = []
        names = ITEM_PROPERTIES.get(type_, [])
        if names:
            found.append(pick(*(f"'{n}'" for n in names)))
        if scope.context_item and names:
            found.append(pick(*(f'context_item["{n}"]' for n in names)))
        users = USER_PROPERTIES.get(type_, [])
        if scope.context_user and users:
            found.append(pick(*(f'context_user["{n}"]' for n in users)))
        for name, variable in scope.variables:
            if variable is type_:
                found.append(pick(f"'{name}'"))
            if variable is T.INTERACTION and type_ in INTERACTION_FIELDS:
                found.append(pick(*(f"'{name}'[\"{f}\"]" for f in INTERACTION_FIELDS[type_])))
        literal = {
            T.INT: INT,
            T.DOUBLE: DOUBLE,
            T.TIMESTAMP: pick("now()", "now", "NOW()"),
            T.STRING: STRING,
            T.BOOLEAN: one(keyword("true"), keyword("false")),
            T.STRING_SET: collection("{", "}", STRING),
            T.INT_SET: collection("{", "}", INT),
            T.STRING_ARRAY: collection("[", "]", STRING),
        }.get(type_)
        if literal is not None:
            found.append(literal)
        # A literal null is typed as the other operand would be: `null - now()` is a timestamp
        # and `abs(null)` a double, so null stands only where that keeps the type.
        if type_ in (T.DOUBLE, T.STRING, T.BOOLEAN):
            found.append(keyword("null"))
        return found

    # -- compound expressions -------------------------------------------------------------------

    def compounds(self, type_: T, depth: int, scope: Scope) -> list[Production]:
        def c(t: T) -> Production:
            return self.child(t, depth, scope)

        number = one(c(T.INT), c(T.DOUBLE))
        # Where only an int will do (array indexes, digits, counts).
        integer = one(
            INT, pick("'year'"), call("size", c(T.STRING_SET)), call("length", c(T.STRING))
        )
        found: list[Production] = [
            fmt("({} {} then {} else {})", keyword("if"), c(T.BOOLEAN), c(type_), c(type_)),
        ]
        if type_ not in COLLECTIONS:
            found.append(call("coalesce", c(type_), c(type_)))
        if type_ is T.INT:
            found += [
                infix(["+", "-", "*"], c(T.INT), c(T.INT)),
                fmt("(-{})", c(T.INT)),
                call("abs", c(T.INT)),
                call("floor", c(T.INT)),
                call("ceil", c(T.INT)),
                call("round", c(T.INT)),
                call("size", one(*(c(t) for t in (*COLLECTIONS, T.STRING)))),
                call("length", c(T.STRING)),
                call("number", c(T.BOOLEAN)),
                fmt("{}({}, {})", pick("max", "min"), c(T.INT), c(T.INT)),
                fmt("{}({})", pick("max", "min"), c(T.INT_SET)),
                call("reduce", pick('"+"', '"*"'), c(T.INT_SET), c(T.INT)),
                fmt(
                    "{}({})",
                    pick(*(f"num_item_{k}" for k in INTERACTION_KINDS[:5])),
                    one(c(T.STRING), pick("'itemId'")),
                ),
            ]
        elif type_ is T.DOUBLE:
            found += [
                infix(["+", "-", "*", "/", "%"], number, c(T.DOUBLE)),
                infix(["/", "%"], c(T.INT), c(T.INT)),
                infix(["-"], c(T.TIMESTAMP), c(T.TIMESTAMP)),
                fmt("(-{})", c(T.DOUBLE)),
                fmt("{}({})", pick("abs", "floor", "ceil", "round"), c(T.DOUBLE)),
                call("round", c(T.DOUBLE), integer),
                fmt("{}({})", pick("sqrt", "exp", "ln", "log"), number),
                call("log", number, number),
                call("pow", number, number),
                call("avg", number, number),
                call("avg", c(T.INT_SET)),
                call("number", c(T.STRING)),
                fmt("{}({}, {})", pick("max", "min"), c(T.DOUBLE), number),
                call("earth_distance", number, number, number, number),
                fmt('{}["price"]', call("item_values", c(T.STRING))),
                pick("random()"),
            ]
        elif type_ is T.TIMESTAMP:
            found += [
                infix(["+", "-"], c(T.TIMESTAMP), number),
                call("timestamp", one(c(T.STRING), number)),
                call("timestamp", pick('"2024-01-01T00:00:00Z"', '"2024-02-30"', '"x"')),
                fmt("{}({}, {})", pick("max", "min"), c(T.TIMESTAMP), c(T.TIMESTAMP)),
            ]
        elif type_ is T.STRING:
            found += [
                infix(["+"], c(T.STRING), c(T.STRING)),
                fmt("{}({})", pick("upper", "lower"), c(T.STRING)),
                call("string", one(*(c(t) for t in (T.INT, T.DOUBLE, T.BOOLEAN, T.TIMESTAMP)))),
                fmt('{}["title"]', call("item_values", c(T.STRING))),
                fmt("{}[{}]", c(T.STRING_ARRAY), integer),
                fmt("{}({}, {})", pick("max", "min"), c(T.STRING), c(T.STRING)),
            ]
        elif type_ is T.BOOLEAN:
            comparisons = ["==", "!=", "<", "<=", ">", ">="]
            found += [
                fmt("({} {} {})", c(T.BOOLEAN), keyword("and"), c(T.BOOLEAN)),
                fmt("({} {} {})", c(T.BOOLEAN), keyword("or"), c(T.BOOLEAN)),
                infix(["&&", "||"], c(T.BOOLEAN), c(T.BOOLEAN)),
                fmt("({} {})", keyword("not"), c(T.BOOLEAN)),
                fmt("(!{})", c(T.BOOLEAN)),
                one(*(infix(comparisons, c(t), c(t)) for t in (*NUMBERS, T.TIMESTAMP, T.STRING))),
                infix(comparisons, number, c(T.TIMESTAMP)),
                fmt("({} < {} <= {})", number, number, number),
                infix(["==", "!="], c(T.BOOLEAN), c(T.BOOLEAN)),
                infix(comparisons, c(T.STRING_SET), c(T.STRING_SET)),
                infix(["in", "not in"], c(T.STRING), c(T.STRING_SET)),
                infix(["in", "not in"], c(T.STRING), c(T.STRING_ARRAY)),
                infix(["in", "not in"], c(T.STRING), c(T.STRING)),
                infix(["in", "not in"], c(T.INT), c(T.INT_SET)),
                fmt(
                    "{}({}, {})",
                    pick("contains", "starts_with", "ends_with"),
                    c(T.STRING),
                    c(T.STRING),
                ),
                call("matches", c(T.STRING), pick('"^R"', '"h.t"', '"("', '"[a-z]+$"', '"\\\\d"')),
                call("boolean", one(*(c(t) for t in (T.INT, T.STRING, T.STRING_SET)))),
                self.lambda_call("exists", T.BOOLEAN, depth, scope),
                self.interactions_check(depth, scope),
            ]
        elif type_ is T.STRING_SET:
            found += [
                infix(["+", "-", "&"], c(T.STRING_SET), c(T.STRING_SET)),
                self.lambda_call("map", T.STRING, depth, scope),
                self.lambda_call("select", T.BOOLEAN, depth, scope, over=T.STRING_SET),
                call("reduce", pick('"+"', '"&"'), collection("{", "}", c(T.STRING_SET), 2, 1)),
            ]
        elif type_ is T.INT_SET:
            found += [
                infix(["+", "-", "&"], c(T.INT_SET), c(T.INT_SET)),
                self.lambda_call("map", T.INT, depth, scope),
                self.lambda_call("select", T.BOOLEAN, depth, scope, over=T.INT_SET),
            ]
        elif type_ is T.STRING_ARRAY:
            found += [
                call("split", c(T.STRING), c(T.STRING)),
                infix(["&", "+"], c(T.STRING_ARRAY), c(T.STRING_ARRAY)),
            ]
        return found

    def lambda_call(
        self, name: str, body: T, depth: int, scope: Scope, over: T | None = None
    ) -> Production:
        """`name(lambda 'vN': body, collection)`; the variable has the collection's element type
        (and the optional second one, 'nN', is an int)."""
        variable, index = f"v{len(scope.variables)}", f"n{len(scope.variables)}"
        options = []
        for collection_type in [over] if over is not None else list(COLLECTIONS):
            element = T.INT if collection_type is T.INT_SET else T.STRING
            inner = scope.with_variable(variable, element)
            for parameters, body_scope in (
                (f"'{variable}'", inner),
                (f"'{variable}', '{index}'", inner.with_variable(index, T.INT)),
            ):
                options.append(
                    fmt(
                        name + "(lambda " + parameters + ": {}, {})",
                        self.child(body, depth, body_scope),
                        self.child(collection_type, depth, scope),
                    )
                )
        return one(*options)

    def interactions_check(self, depth: int, scope: Scope) -> Production:
        """A membership test against a function of some interactions of a user."""
        variable = f"v{len(scope.variables)}"
        inner = scope.with_variable(variable, T.INTERACTION)
        kinds = drawn(
            st.lists(st.sampled_from(INTERACTION_KINDS), min_size=1, max_size=3, unique=True).map(
                lambda names: "{" + ", ".join(string_literal(k) for k in names) + "}"
            )
        )
        count = one(pick(""), fmt(", {}", INT))
        return fmt(
            "({} {} map(lambda '" + variable + "': {}, user_interactions({}, {}{})))",
            self.child(T.STRING, depth, scope),
            keyword("in"),
            self.child(T.STRING, depth, inner),
            self.child(T.STRING, depth, scope),
            kinds,
            count,
        )


WELL_TYPED = Grammar(typed=True)
ILL_TYPED = Grammar(typed=False)
SCOPES = [Scope(), Scope(context_item=True, context_user=True), Scope(context_user=True)]


@st.composite
def expressions(draw: st.DrawFn, grammar: Grammar) -> tuple[str, T, Scope]:
    scope = draw(st.sampled_from(SCOPES))
    type_ = draw(st.sampled_from(VALUE_TYPES))
    depth = draw(st.integers(0, 3))
    return grammar.expression(draw, type_, depth, scope), type_, scope


TOKENS = [
    *("'price'", "'title'", "'tags'", "'itemId'", "'x'", "'nope'", "'", "''", "'a b'"),
    *('"a"', '"', '""', '"\\"', '"\\u00e9"', '"\\x"', '"\\u12"', "\\", '"it\'s"'),
    *("(", ")", "[", "]", "{", "}", ",", ":", ";", ".", "?", "$", "@", "#", "`"),
    *("lambda", "if", "then", "else", "and", "or", "not", "in", "AND", "Not", "IN"),
    *("!", "&&", "||", "==", "!=", "=", "<", "<=", ">", ">=", "<>", "+", "-", "*", "/", "%", "&"),
    *("0", "1", "-3", "0.5", ".5", "1.", "1e9", "1E-2", "1e", "1e999", "99999999999999999999"),
    *("true", "false", "null", "TRUE", "Null"),
    *("now", "now()", "size", "map", "select", "exists", "reduce", "coalesce", "max", "upper"),
    *("item_values", "user_interactions", "earth_distance", "matches", "random", "foo"),
    *("context_item", "context_user", 'context_item["price"]', 'context_user["city"]'),
    *('context_user["a\\nb"]', 'item_values("i1")["\\n"]', '["a"][0]'),
    *("//", "/*", "*/", "--", "\n", "\t", " ", "\r", "\x00", "é", "\u202e", "😀"),
]
TOKEN_TEXT = st.lists(st.sampled_from(TOKENS), max_size=25).map(
    lambda parts: "".join(parts) if len(parts) % 2 else " ".join(parts)
)
RANDOM_TEXT = st.one_of(st.text(), st.text(alphabet="()[]{}'\",:!&|<=>+-*/%\\ \n0.e", max_size=40))


# -- fixtures and checks ----------------------------------------------------------------------


class Shop:
    """The shop's database, an engine over it, its schema and the dense index of each item."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.engine = ExpressionEngine(database)
        self.schema: Schema = database.read_sync(lambda ctx: ctx.schema)
        rows = database.read_sync(
            lambda ctx: ctx.conn.execute('SELECT "$id", "$idx" FROM items').fetchall()
        )
        self.indexes: dict[str, int] = dict(rows)

    def __repr__(self) -> str:  # keeps Hypothesis' reports of failing examples short
        return "Shop()"

    def mask(self, text: str, context: Context) -> Any:
        return self.database.read_sync(lambda ctx: self.engine.mask(ctx, text, context))

    def boosts(self, text: str, context: Context) -> Any:
        return self.database.read_sync(lambda ctx: self.engine.boosts(ctx, text, context))

    def values(self, text: str, context: Context) -> Any:
        return self.database.read_sync(lambda ctx: self.engine.values(ctx, text, ITEM_IDS, context))


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    database, _ = build_shop(tmp_path_factory.mktemp("shop") / "shop.duckdb")
    yield Shop(database)
    database.close()


def check_error(error: reql.ReqlError, text: str) -> None:
    """A ReqlError names a place in the text and shows it with a caret."""
    assert error.line >= 1, error
    assert error.column >= 1, error
    report = str(error)
    assert report.startswith("ReQL: "), report
    # One line of message, ending with the place (text of the expression that the message quotes
    # must not break it); then the line of the expression; then the caret.
    first = report.split("\n")[0]
    assert first == f"ReQL: {error.message} at {error.line}:{error.column}", report
    assert error.line <= max(1, len(text.split("\n"))), (error.line, report)
    assert CARET.fullmatch(report.split("\n")[-1]), report


def compile_or_error(
    text: str, purpose: reql.Purpose, schema: Schema, scope: Scope = Scope()
) -> reql.CompiledExpression | reql.ReqlError:
    """Compile; any exception other than a ReqlError fails the test (pytest shows it)."""
    try:
        return reql.compile_expression(
            text,
            purpose,
            catalog=catalog_for(schema),
            context_item=scope.context_item,
            context_user=scope.context_user,
        )
    except reql.ReqlError as error:
        check_error(error, text)
        return error


def evaluated(run: Callable[[], Any]) -> Any:
    """Run an evaluation: its result, or the BadExpression it raised (after checking it).
    Any other exception (a duckdb.Error above all) fails the test."""
    failure: BadExpression | None = None
    try:
        return run()
    except BadExpression as error:
        failure = error
    check_error(failure.reql_error, failure.reql_error.source)
    assert failure.status == 400
    return failure


def check_value(value: Any, type_: T) -> None:
    """A value of a well-typed expression has the JSON form of its type."""
    if value is None:
        return
    if type_ in (T.INT, T.DOUBLE, T.TIMESTAMP):
        assert isinstance(value, int | float), value
        assert not isinstance(value, bool), value
    elif type_ is T.STRING:
        assert isinstance(value, str), value
    elif type_ is T.BOOLEAN:
        assert isinstance(value, bool), value
    else:
        assert isinstance(value, list), value


CONTEXTS = [
    Context(item_id="i1", user_id="u1"),
    Context(item_id="i5", user_id="u3"),
    Context(item_id="no-such-item", user_id="no-such-user"),
]


def evaluate_everywhere(shop: Shop, text: str, type_: T | None, scope: Scope) -> None:
    """Evaluate a compiling expression as a filter, booster and value, in every context."""
    contexts = {
        Context(
            item_id=full.item_id if scope.context_item else None,
            user_id=full.user_id if scope.context_user else None,
        )
        for full in CONTEXTS
    }
    for context in sorted(contexts, key=repr):
        evaluate(shop, text, type_, context)


def evaluate(shop: Shop, text: str, type_: T | None, context: Context) -> None:
    """Values, masks and boosts; where the expression is deterministic (no now() or random()),
    the mask and the boosts must agree with the values item by item."""
    values = evaluated(lambda: shop.values(text, context))
    if not isinstance(values, BadExpression):
        assert len(values) == len(ITEM_IDS)
        assert values[-1] is None  # the unknown item
        if type_ is not None:
            for value in values:
                check_value(value, type_)
    comparable = not isinstance(values, BadExpression) and not re.search(
        "now|random", text, re.IGNORECASE
    )
    by_item = dict(zip(ITEM_IDS, values, strict=True)) if comparable else {}
    if type_ in (T.BOOLEAN, None):
        mask = evaluated(lambda: shop.mask(text, context))
        if not isinstance(mask, BadExpression):
            assert mask.dtype.name == "bool"
            assert len(mask) == max(shop.indexes.values()) + 1
            for item, value in by_item.items():
                if item in shop.indexes:
                    assert bool(mask[shop.indexes[item]]) == (value is True), (item, value)
    if type_ in (T.INT, T.DOUBLE, None):
        boosts = evaluated(lambda: shop.boosts(text, context))
        if not isinstance(boosts, BadExpression):
            assert len(boosts) == max(shop.indexes.values()) + 1
            assert not any(math.isnan(b) for b in boosts), boosts
            for item, value in by_item.items():
                if item in shop.indexes:
                    boost = boosts[shop.indexes[item]]
                    if value is None:  # null, NaN, or an infinity (which JSON cannot hold)
                        assert boost == 1.0 or math.isinf(boost), (item, boost)
                    else:
                        assert boost == float(value), (item, value, boost)


def purpose_of(type_: T) -> reql.Purpose:
    if type_ is T.BOOLEAN:
        return reql.Purpose.FILTER
    if type_ in NUMBERS:
        return reql.Purpose.BOOSTER
    return reql.Purpose.VALUE


def engine_error(shop: Shop, text: str, purpose: reql.Purpose, scope: Scope) -> BadExpression:
    """Compile through the engine as the server does, expecting a BadExpression."""
    context = Context(
        item_id="i1" if scope.context_item else None,
        user_id="u1" if scope.context_user else None,
    )
    with pytest.raises(BadExpression) as caught:
        shop.database.read_sync(
            lambda ctx: shop.engine.compile(ctx, text, purpose, context, "filter")
        )
    return caught.value


# -- the properties -------------------------------------------------------------------------------


def check_well_typed(shop: Shop, text: str, type_: T, scope: Scope) -> None:
    purpose = purpose_of(type_)
    compiled = compile_or_error(text, purpose, shop.schema, scope)
    # The grammar writes only well-formed, well-typed expressions within the limits: each must
    # compile, to its own type.
    assert isinstance(compiled, reql.CompiledExpression), f"{text!r}: {compiled}"
    assert compiled.type.kind in {*KINDS[type_], rt.Kind.NULL}, (text, compiled.type)
    if purpose is not reql.Purpose.VALUE:
        as_value = compile_or_error(text, reql.Purpose.VALUE, shop.schema, scope)
        assert isinstance(as_value, reql.CompiledExpression), f"{text!r}: {as_value}"
    evaluate_everywhere(shop, text, type_, scope)


def check_ill_typed(shop: Shop, text: str, scope: Scope, purpose: reql.Purpose) -> None:
    compiled = compile_or_error(text, purpose, shop.schema, scope)
    if isinstance(compiled, reql.ReqlError):
        # Still well-formed: the mix-up is of types, and is reported as such, at the same place
        # through the server.
        assert not isinstance(compiled, reql.ReqlSyntaxError), (text, str(compiled))
        bad = engine_error(shop, text, purpose, scope)
        assert bad.status == 400
        assert str(bad) == str(compiled)
        return
    type_ = {
        rt.Kind.BOOLEAN: T.BOOLEAN,
        rt.Kind.INT: T.INT,
        rt.Kind.DOUBLE: T.DOUBLE,
    }.get(compiled.type.kind)
    evaluate_everywhere(shop, text, type_, scope)


def check_any_text(shop: Shop, text: str, purpose: reql.Purpose) -> None:
    scope = Scope(context_item=True, context_user=True)
    compiled = compile_or_error(text, purpose, shop.schema, scope)
    if isinstance(compiled, reql.CompiledExpression):
        evaluate_everywhere(shop, text, None, scope)


@settings(SETTINGS, max_examples=800)
@given(expressions(WELL_TYPED))
def test_well_typed_expressions_compile_and_evaluate(
    shop: Shop, case: tuple[str, T, Scope]
) -> None:
    check_well_typed(shop, *case)


@settings(SETTINGS, max_examples=800)
@given(expressions(ILL_TYPED), st.sampled_from(list(reql.Purpose)))
def test_ill_typed_expressions_are_reql_errors_or_evaluate(
    shop: Shop, case: tuple[str, T, Scope], purpose: reql.Purpose
) -> None:
    check_ill_typed(shop, case[0], case[2], purpose)


@settings(SETTINGS, max_examples=2000)
@given(st.one_of(RANDOM_TEXT, TOKEN_TEXT), st.sampled_from(list(reql.Purpose)))
def test_any_text_compiles_or_is_a_reql_error(shop: Shop, text: str, purpose: reql.Purpose) -> None:
    check_any_text(shop, text, purpose)


# What these properties found, minimised, kept as fixed cases (each once gave a DuckDB error, an
# AssertionError, or a report broken over lines).
WELL_TYPED_CASES = [
    ("avg({})", T.DOUBLE),
    ("avg([])", T.DOUBLE),
    ("abs(max({}))", T.DOUBLE),
    ("floor(min([]))", T.DOUBLE),
    ('abs(reduce("+", {}))', T.DOUBLE),
    ('upper(reduce("+", {}))', T.STRING),
    ("contains(null, null)", T.BOOLEAN),
    ("map(lambda 'x': -'x', {})", T.INT_SET),
    ("round('price', 1)", T.DOUBLE),
    ("round('lat', 'year')", T.DOUBLE),
    ("max({}) == null", T.BOOLEAN),
]
ANY_TEXT_CASES = [
    ('{1} == {"a"}', reql.Purpose.FILTER),
    ("'tags' == {1}", reql.Purpose.FILTER),
    ("'tags' <= {1}", reql.Purpose.FILTER),
    ('context_user["a\\nb"]', reql.Purpose.VALUE),
    ('item_values("i1")["\\n"]', reql.Purpose.VALUE),
]


@pytest.mark.parametrize(("text", "type_"), WELL_TYPED_CASES)
def test_well_typed_cases_found_before(shop: Shop, text: str, type_: T) -> None:
    check_well_typed(shop, text, type_, Scope())


@pytest.mark.parametrize(("text", "purpose"), ANY_TEXT_CASES)
def test_cases_found_before(shop: Shop, text: str, purpose: reql.Purpose) -> None:
    check_any_text(shop, text, purpose)


@settings(SETTINGS, max_examples=500)
@given(TOKEN_TEXT)
def test_a_valid_start_with_junk_after_it_is_a_reql_error_inside_the_text(
    shop: Shop, text: str
) -> None:
    for prefix in ("'price' < 100 and ", "size('tags') > 0 ", "if 'in_stock' then "):
        whole = prefix + text
        result = compile_or_error(whole, reql.Purpose.FILTER, shop.schema)
        if isinstance(result, reql.ReqlError):
            lines = whole.split("\n")
            assert result.column <= len(lines[result.line - 1]) + 1, (whole, str(result))


NESTINGS = {
    # opener, the innermost expression, closer: nested n times
    "parentheses": ("(", "1", ")"),
    "arrays": ("[", "1", "]"),
    "sets": ("{", "1", "}"),
    "calls": ("abs(", "1", ")"),
    "not": ("not ", "true", ""),
    "bang": ("!", "true", ""),
    "minus": ("-", "1", ""),
    "sums": ("1 + ", "1", ""),
    "conditions": ("if true then ", "1", " else 1"),
    "lambdas": ("exists(lambda 'x': ", "true", ", 'tags')"),
    "indexes": ("", "'gallery'", "[0]"),
}


@settings(SETTINGS, max_examples=150)
@given(
    st.one_of(st.integers(1, 99), st.integers(95, 105), st.integers(100, 3000)),
    st.sampled_from(sorted(NESTINGS)),
)
def test_deep_nesting_is_a_limit_error_not_a_recursion_error(
    shop: Shop, depth: int, shape: str
) -> None:
    opener, core, closer = NESTINGS[shape]
    text = opener * depth + core + closer * depth
    result = compile_or_error(text, reql.Purpose.VALUE, shop.schema)
    if len(text) > 10_000:
        assert isinstance(result, reql.ReqlLimitError), (shape, depth, result)
    elif shape == "minus":
        # Minus signs fold into the number: no nesting at all.
        assert isinstance(result, reql.CompiledExpression), (shape, depth, result)
    elif depth > 100 or (shape == "lambdas" and depth > reql.MAX_LAMBDA_DEPTH):
        assert isinstance(result, reql.ReqlLimitError), (shape, depth, result)
    elif depth <= 40 and shape != "indexes":
        # Well within the limit even where one level of text is two of the tree (a call and its
        # lambda). (An index of a string is a type error.)
        assert isinstance(result, reql.CompiledExpression), (shape, depth, result)


# -- over HTTP --------------------------------------------------------------------------------


@pytest.fixture
def http_shop(live: RunningServer) -> RunningServer:
    for name, ptype in (("price", "double"), ("title", "string"), ("tags", "set")):
        assert live.request("PUT", f"/items/properties/{name}?type={ptype}").status_code == 201
    body = {"price": 10.0, "title": "Red Shoes", "tags": ["red"], "!cascadeCreate": True}
    assert live.request("POST", "/items/i1", json=body).status_code == 200
    assert live.request("PUT", "/items/i2").status_code == 201
    return live


@HTTP_SETTINGS
@given(st.one_of(RANDOM_TEXT, TOKEN_TEXT, expressions(ILL_TYPED).map(lambda c: c[0])))
def test_any_filter_text_over_http_is_a_200_400_or_404(http_shop: RunningServer, text: str) -> None:
    check_over_http(http_shop, text)


HTTP_CASES = [
    "avg({}) > 0",
    "abs(max({})) > 0",
    'abs(reduce("+", {})) > 0',
    "contains(null, null)",
    "size(map(lambda 'x': -'x', {})) == 0",
    "round('price', 1) > 0",
    "round('price', size('tags')) > 0",
    '{1} == {"a"}',
    "'tags' <= {1}",
    'item_values("i1")["a\\nb"] == 1',
]


@pytest.mark.parametrize("text", HTTP_CASES)
def test_the_cases_found_before_over_http(http_shop: RunningServer, text: str) -> None:
    check_over_http(http_shop, text)


def check_over_http(http_shop: RunningServer, text: str) -> None:
    quoted = urllib.parse.quote(text, safe="")
    response = http_shop.request("GET", f"/items/list/?filter={quoted}")
    # 404: a property that does not exist (List Items answers so, as Recombee documents).
    assert response.status_code in (200, 400, 404), (text, response.status_code, response.text)
    if response.status_code in (400, 404):
        payload = response.json()
        assert payload["statusCode"] == response.status_code
        assert payload["error"].startswith("ReQL: "), (text, payload)
        if response.status_code == 404:
            assert "unknown property" in payload["error"], (text, payload)
        assert re.search(r" at \d+:\d+$", payload["error"].split("\n")[0]), (text, payload)
    else:
        listed = response.json()
        assert isinstance(listed, list)
        assert set(listed) <= {"i1", "i2"}
