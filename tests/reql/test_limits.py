"""Limits on what an expression may ask for: number literals in range, and a bound on the work
per candidate (reql/cost.py), with errors at the right place and DuckDB timings that justify it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reql
from reql import types as t
from reql.checker import Environment, check
from reql.cost import ASSUMED_INTERACTIONS, ASSUMED_SIZE, check_cost

SETTINGS = settings(derandomize=True, deadline=None, max_examples=300)
CATALOG = reql.Catalog(
    items=reql.EntityTable(
        "item",
        "items",
        "$id",
        "$idx",
        "itemId",
        (
            reql.Column("price", t.DOUBLE),
            reql.Column("title", t.STRING),
            reql.Column("tags", t.set_of(t.STRING)),
        ),
    ),
    users=reql.EntityTable(
        "user", "users", "$id", "$idx", "userId", (reql.Column("topics", t.set_of(t.STRING)),)
    ),
    interactions=reql.InteractionsTable(
        "interactions", "user_id", "item_id", "ts", "kind", (("detail_views", 1), ("purchases", 2))
    ),
)
CANDIDATES = 2_000
INT64_MAX = 2**63 - 1


def compile_value(text: str, max_cost: int = reql.MAX_COST) -> reql.CompiledExpression:
    return reql.compile_expression(
        text, reql.Purpose.VALUE, catalog=CATALOG, context_user=True, max_cost=max_cost
    )


def error_of(text: str, max_cost: int = reql.MAX_COST) -> reql.ReqlError:
    with pytest.raises(reql.ReqlError) as caught:
        compile_value(text, max_cost)
    return caught.value


def pointed_at(error: reql.ReqlError) -> str:
    """The expression's text from the caret on, as the report shows it."""
    _, line, caret = str(error).split("\n")
    return line[caret.index("^") :]


def estimate(text: str) -> int:
    """The estimated cost of an expression per candidate, whatever the limit."""
    environment = Environment(CATALOG, reql.BUILTIN_FUNCTIONS, "item", False, True)
    checked = check(text, reql.parse(text), environment, reql.Purpose.VALUE)
    return check_cost(checked, max_cost=10**100, max_lambda_depth=10).cost


def numbers(n: int) -> str:
    return "[" + ",".join(str(i) for i in range(1, n + 1)) + "]"


def nested_maps(n: int, body: str = "'a' + 'b' + 'c'") -> str:
    """Three nested maps over [1, ..., n]: cubic in n."""
    return (
        f"size(map(lambda 'a': size(map(lambda 'b': size(map(lambda 'c': {body}, {numbers(n)})), "
        f"{numbers(n)})), {numbers(n)})) > 0"
    )


# -- integer and double literals ------------------------------------------------------------------


def test_an_integer_of_more_than_4300_digits_is_a_limit_error_at_the_literal() -> None:
    # (Python's int() refuses more than 4,300 digits with a ValueError.)
    error = error_of("'price' < " + "1" * 4301)
    assert isinstance(error, reql.ReqlLimitError)
    assert error.message == (
        "integer 11111111111111111111…(4,301 digits) is out of range (64-bit integers)"
    )
    assert (error.line, error.column) == (1, 11)
    assert pointed_at(error).startswith("1111")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("9223372036854775807", INT64_MAX),
        ("-9223372036854775808", -(2**63)),
        ("0" * 5000 + "42", 42),
        ("-" + "0" * 5000 + "9223372036854775808", -(2**63)),
    ],
)
def test_integers_in_the_64_bit_range_compile(text: str, value: int) -> None:
    assert list(compile_value(text).bind().values()) == [value]


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("9223372036854775808", 1),
        ("-9223372036854775809", 1),
        ("--9223372036854775808", 1),
        ("1 + 99999999999999999999", 5),
        ("-99999999999999999999", 2),
    ],
)
def test_integers_out_of_the_64_bit_range_are_limit_errors(text: str, column: int) -> None:
    error = error_of(text)
    assert isinstance(error, reql.ReqlLimitError)
    assert "is out of range (64-bit integers)" in error.message
    assert (error.line, error.column) == (1, column)


@SETTINGS
@given(
    st.sampled_from(["", "-", "- ", "--"]),
    st.integers(0, 3000),
    st.text("0123456789", min_size=1, max_size=6000),
)
def test_any_integer_literal_compiles_or_is_a_limit_error(
    sign: str, zeros: int, digits: str
) -> None:
    text = sign + "0" * zeros + digits
    magnitude = ("0" * zeros + digits).lstrip("0") or "0"
    negative = sign.count("-") % 2 == 1
    # (Compared without int() where it would refuse the digits.)
    if len(magnitude) <= 19 and int(magnitude) <= INT64_MAX + negative:
        value = -int(magnitude) if negative else int(magnitude)
        assert list(compile_value(text).bind().values()) == [value]
        return
    # Anything but a ReqlLimitError (a ValueError above all) fails the test.
    with pytest.raises(reql.ReqlLimitError) as caught:
        compile_value(text)
    error = caught.value
    assert "out of range (64-bit integers)" in error.message
    assert len(error.message) < 100  # long literals are abbreviated
    assert error.line == 1
    assert error.column - 1 <= len(sign)  # at the literal, or at its folded minus sign


@pytest.mark.parametrize(
    ("text", "column"),
    [("1e999", 1), ("-1e999", 2), ("1.8e308", 1), ("1" * 400 + ".5", 1), ("2 * 1E+400", 5)],
)
def test_doubles_too_large_are_limit_errors(text: str, column: int) -> None:
    error = error_of(text)
    assert isinstance(error, reql.ReqlLimitError)
    assert error.message.startswith("number ")
    assert "is out of range" in error.message
    assert (error.line, error.column) == (1, column)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0." + "1" * 9000, 0.1111111111111111),
        ("1e-99999", 0.0),
        ("1.7e308", 1.7e308),
        ("0" * 4000 + "1.5", 1.5),
    ],
)
def test_doubles_with_many_digits_or_tiny_values_compile(text: str, value: float) -> None:
    assert list(compile_value(text).bind().values()) == [value]


@SETTINGS
@given(
    st.text("0123456789", min_size=1, max_size=3000),
    st.text("0123456789", max_size=3000),
    st.one_of(st.just(""), st.integers(-9999, 9999).map(lambda e: f"e{e:+d}")),
)
def test_any_double_literal_compiles_or_is_a_limit_error(
    whole: str, fraction: str, exponent: str
) -> None:
    text = f"{whole}.{fraction}{exponent}"
    if abs(float(text)) != float("inf"):
        assert list(compile_value(text).bind().values()) == [float(text)]
        return
    with pytest.raises(reql.ReqlLimitError, match="is out of range"):
        compile_value(text)


# -- the cost bound -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [160, 230])  # 1,700 and 2,600 characters
def test_three_nested_maps_over_literals_are_refused_at_the_outermost_map(n: int) -> None:
    text = nested_maps(n)
    error = error_of(text)
    assert isinstance(error, reql.ReqlLimitError)
    assert error.message.startswith("expression too costly: nested lambdas in this map() ")
    assert f"the limit is {reql.MAX_COST:,}" in error.message
    outermost_map = text.removeprefix("size(").removesuffix(") > 0")
    assert f"about {estimate(outermost_map):,} elements per candidate" in error.message
    assert (error.line, error.column) == (1, 6)
    assert pointed_at(error).startswith("map(lambda 'a'")


def test_the_error_is_at_the_outermost_lambda_call_that_exceeds_the_limit() -> None:
    inner = f"exists(lambda 'b': 'a' * 'b' == 'price', {numbers(200)})"
    text = f"'price' > 0 and\n  exists(lambda 'a': {inner}, {numbers(200)})"
    # A limit that the inner call exceeds on its own.
    limit = estimate(inner.replace("'a'", "1")) - 1
    error = error_of(text, max_cost=limit)
    assert (error.line, error.column) == (2, 3)
    assert pointed_at(error).startswith("exists(lambda 'a'")
    assert str(error).split("\n")[0].endswith(f"the limit is {limit:,} at 2:3")


def test_a_single_lambda_over_a_large_literal_is_named_as_such() -> None:
    text = f"exists(lambda 'x': 'x' == 'price', {numbers(300)})"
    error = error_of(text, max_cost=500)
    assert error.message.startswith("expression too costly: the lambda of this exists() evaluates")
    assert (error.line, error.column) == (1, 1)


def test_calls_within_the_limit_each_but_not_together_are_refused_at_the_start() -> None:
    call = f"exists(lambda 'x': 'x' == 'price', {numbers(100)})"
    text = f"{call} or {call}"
    error = error_of(text, max_cost=estimate(call))
    assert error.message.startswith("expression too costly: it evaluates about ")
    assert (error.line, error.column) == (1, 1)
    compile_value(text, max_cost=estimate(text))


def test_literal_elements_count_toward_the_cost() -> None:
    text = "'price' in " + numbers(1000)
    assert estimate(text) >= 2000  # built, and searched
    error = error_of(text, max_cost=1000)
    assert isinstance(error, reql.ReqlLimitError)
    assert error.message.startswith("expression too costly: it evaluates about ")


def test_the_message_says_when_it_assumes_sizes() -> None:
    error = error_of("exists(lambda 'a': exists(lambda 'b': 'a' == 'b', 'tags'), 'tags')", 100)
    assert f"(assuming {ASSUMED_SIZE} elements in a set or array of unknown size" in error.message
    assert "assuming" not in error_of(nested_maps(160)).message


def test_the_limit_can_be_raised() -> None:
    compiled = compile_value(nested_maps(160), max_cost=10**12)
    assert compiled.sql


def test_lambda_functions_nest_at_most_three_deep() -> None:
    three = "exists(lambda 'a': exists(lambda 'b': exists(lambda 'c': true, [1]), [1]), [1])"
    assert compile_value(three).sql
    four = (
        "exists(lambda 'a': exists(lambda 'b': exists(lambda 'c':\n"
        "    exists(lambda 'd': true, [1]), [1]), [1]), [1])"
    )
    error = error_of(four, max_cost=10**12)
    assert isinstance(error, reql.ReqlLimitError)
    depth = reql.MAX_LAMBDA_DEPTH
    assert error.message == f"lambda functions are nested 4 deep; the limit is {depth}"
    assert (error.line, error.column) == (2, 5)
    assert pointed_at(error).startswith("exists(lambda 'd'")


def test_lambdas_in_the_collection_argument_do_not_nest() -> None:
    chained = (
        "map(lambda 'a': 'a', map(lambda 'b': 'b', map(lambda 'c': 'c', "
        "map(lambda 'd': 'd', [1]))))"
    )
    assert compile_value(chained).sql


@pytest.mark.parametrize(
    "text",
    [
        "'itemId' not in map(lambda 'i': 'i'[\"itemId\"], "
        'user_interactions(context_user["userId"], {"purchases"}))',
        "exists(lambda 'a': exists(lambda 'b': 'a' == 'b', context_user[\"topics\"]), 'tags')",
        "size(select(lambda 't': 't' in context_user[\"topics\"], 'tags')) > 0",
        "select(lambda 't': 'tags' == 'tags', 'tags')",
        "'itemId' not in {" + ", ".join(f'"item-{i}"' for i in range(800)) + "}",
        "'title' in split(\"" + ",".join("abc" for _ in range(1000)) + '", ",")',
        nested_maps(5),
    ],
)
def test_usual_expressions_are_within_the_limit(text: str) -> None:
    assert compile_value(text).sql


def test_split_of_a_literal_is_bounded_by_its_length() -> None:
    over_literal = estimate("size(map(lambda 's': 's' + 'title', split(\"a,b\", \",\")))")
    over_property = estimate("size(map(lambda 's': 's' + 'title', split('title', \",\")))")
    assert over_literal < over_property


def test_user_interactions_count_their_n_or_a_default() -> None:
    def idiom(n: str) -> int:
        return estimate(
            "'itemId' in map(lambda 'i': 'i'[\"itemId\"], "
            f'user_interactions(context_user["userId"], {{"purchases"}}{n}))'
        )

    assert idiom(", 5") < idiom(", 50") < idiom(f", {ASSUMED_INTERACTIONS}")
    # A larger n gives no user more interactions than assumed without one.
    assert idiom(f", {ASSUMED_INTERACTIONS * 1000}") == idiom(f", {ASSUMED_INTERACTIONS}")
    assert idiom("") == idiom(f", {ASSUMED_INTERACTIONS}") - 1  # (the literal n is one unit)


# -- what the limit means in DuckDB ---------------------------------------------------------------


@pytest.fixture(scope="module")
def items() -> Iterator[duckdb.DuckDBPyConnection]:
    conn = duckdb.connect()
    conn.execute(
        'CREATE TABLE items ("$idx" BIGINT, "$id" VARCHAR, price DOUBLE, title VARCHAR, '
        "tags VARCHAR[])"
    )
    conn.execute(
        "INSERT INTO items SELECT i, 'i' || i, i * 1.5, 'title ' || i, ['a', 'b', 'c'] "
        f"FROM range({CANDIDATES}) AS r(i)"
    )
    yield conn
    conn.close()


def largest_allowed(shape: str) -> int:
    """The largest n for which `shape` (with `{}` replaced by a list of n) is within the limit."""
    low, high = 1, 2000
    while low < high:
        middle = (low + high + 1) // 2
        try:
            compile_value(shape.replace("{}", numbers(middle)))
            low = middle
        except reql.ReqlLimitError:
            high = middle - 1
    return low


def cpu_seconds(conn: duckdb.DuckDBPyConnection, compiled: reql.CompiledExpression) -> float:
    """The CPU time (all of DuckDB's threads) of evaluating over every candidate, best of two."""
    sql = f"SELECT count(*) FROM items AS c WHERE ({compiled.sql}) IS NOT NULL"
    best = float("inf")
    for _ in range(2):
        start = time.process_time()
        conn.execute(sql, compiled.bind()).fetchall()
        best = min(best, time.process_time() - start)
    return best


@pytest.mark.parametrize(
    "shape",
    [
        # Each builds a set per element, or a string: the costliest elements to evaluate.
        "size(map(lambda 'a': size(map(lambda 'b': size(map(lambda 'c': "
        "'a' + 'b' + 'c' + 'price', {})), {})), {}))",
        "size(map(lambda 'a': size(map(lambda 'b': string('a' * 'b') + 'title', {})), {}))",
        "size(map(lambda 'a': string('a') + 'title', {}))",
        "size(map(lambda 'a': {string('a'), 'title'}, {}))",
        "exists(lambda 'a': exists(lambda 'b': 'a' * 'b' == 'price', {}), {})",
    ],
)
def test_an_expression_just_within_the_limit_evaluates_well_under_a_second(
    items: duckdb.DuckDBPyConnection, shape: str
) -> None:
    n = largest_allowed(shape)
    assert n > 2, "the limit allows next to nothing"
    with pytest.raises(reql.ReqlLimitError):
        compile_value(shape.replace("{}", numbers(n + 1)))
    compiled = compile_value(shape.replace("{}", numbers(n)))
    # Measured at 0.03 to 0.4 s on a busy two-core machine; 100,000 would allow about 2 s.
    assert cpu_seconds(items, compiled) < 1.0, (n, shape)
