"""ReQL inputs: valid expressions, mutations, token soup, deep nests, huge literals."""

from __future__ import annotations

import functools
import json

from hypothesis import strategies as st

from tests.fuzzing.endpoints import RECOMMEND_PATHS, FuzzRequest, encode_query
from tests.fuzzing.json_text import huge_int_text, json_object, jstr, surrogate_text

VALID_REQL = (
    "'price' > 1",
    "'price' < 100 and 'in_stock'",
    "'stock' + 1 >= 2 * 3",
    "\"red\" in 'tags'",
    '\'tags\' & {"red"} == {"red"}',
    "'title' in \"Item number 1\"",
    "'released' > now() - 7*24*3600",
    "if 'in_stock' then 2 else 0.5",
    "size('tags') > 0",
    "'itemId' != \"item-1\"",
    "'price' / 0 > 1",
    "'stock' % 0 == 0",
    "matches('title', \"^Item\")",
    "lower('title') == \"item number 2\"",
    "round('price' * 2) > 3",
    "pow('price', 2) > 10",
    "sqrt(-1) > 0",
    "log(0) < 1",
    "coalesce('price', 0) > 1",
    "exists('tags', lambda 'x': 'x' == \"red\")",
    'map(lambda \'i\': \'i\'["itemId"], user_interactions(context_user["userId"], {"purchases"}))'
    " != []",
    "'itemId' not in map(lambda 'i': 'i'[\"itemId\"], "
    'user_interactions(context_user["userId"], {"detail_views"}))',
    "num_item_purchases('itemId') >= 0",
    "earth_distance(1.0, 2.0, 3.0, 4.0) > 0",
    "'price' > context_item[\"price\"]",
    'context_user["age"] > 18',
    'item_values("item-1")["price"] > 0',
    "reduce(lambda 'a', 'b': 'a' + 'b', 0, [1, 2, 3]) == 6",
    'string(\'stock\') + "x" == "1x"',
    "timestamp(\"2021-01-01\") < 'released'",
    'boolean(1) and number("3") == 3',
    "select('tags', lambda 'x': true) == 'tags'",
    'split("a,b", ",") == ["a", "b"]',
    "starts_with('title', \"I\") or ends_with('title', \"2\") or contains('title', \"m\")",
    "avg([1, 2]) + max(1, 2) + min(3, 4) + abs(-1) + floor(1.5) + ceil(1.5) + exp(1) + ln(2) > 0",
    "random() < 2",
    "length('title') > 3",
    "{1} < {1, 2}",
    "[1, 2][0] == 1",
    "null == 'price'",
    "1 < 'stock' < 10",
    "-'price' < 0",
    "!('in_stock')",
    "'in_stock' && 'stock' > 0 || 'price' == null",
    "// a comment\n'price' > 1",
    '{"a": 1}["a"] == 1',
)
TOKENS = (
    "'price'",
    "'stock'",
    "'title'",
    "'tags'",
    "'released'",
    "'in_stock'",
    "'nosuch'",
    "'itemId'",
    '"s"',
    "1",
    "1.5",
    "-3",
    "true",
    "null",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "+",
    "-",
    "*",
    "/",
    "%",
    "&",
    "==",
    "!=",
    "<",
    ">=",
    "and",
    "or",
    "not",
    "in",
    "if",
    "then",
    "else",
    "lambda",
    "now()",
    "size(",
    "context_item[",
    "context_user[",
    "user_interactions(",
    "map(",
    "'",
    '"',
    "//",
    "\\",
    "\\ud800",
    '"\\ud800"',
    '"\\uDFFF"',
    '"\\x"',
    "\ud800",
    "\x00",
)


def huge_reql_literal(digits: int) -> str:
    return huge_int_text(digits)


@functools.cache
@st.composite
def reql_texts(draw: st.DrawFn) -> str:
    """ReQL text: valid expressions, mutations of them, token soup, deep nests, huge literals."""
    choice = draw(st.integers(0, 9))
    if choice <= 1:
        return draw(st.sampled_from(VALID_REQL))
    if choice == 2:  # a mutation: delete, insert or replace a slice of a valid expression
        text = draw(st.sampled_from(VALID_REQL))
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, min(len(text), start + 8)))
        insert = draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=3)))
        return text[:start] + insert + text[end:]
    if choice == 3:  # token soup
        return " ".join(draw(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=20)))
    if choice == 4:  # deep nesting
        depth = draw(st.integers(50, 5000))
        shape = draw(st.integers(0, 5))
        if shape == 0:
            return "(" * depth + "'price'" + ")" * depth + " > 1"
        if shape == 1:
            return "not " * depth + "'in_stock'"
        if shape == 2:
            return "-" * depth + "'price' > 1"
        if shape == 3:
            return "[" * depth + "1" + "]" * depth + " != null"
        if shape == 4:
            return "'price' + " * depth + "1 > 0"
        return "if true then " * depth + "true" + " else false" * depth
    if choice == 5:  # huge literals
        digits = draw(st.integers(19, 5000))
        literal = draw(
            st.sampled_from(
                [
                    huge_reql_literal(digits),
                    "-" + huge_reql_literal(digits),
                    "1e400",
                    "1" + "0" * digits + ".5",
                    "0." + "0" * digits + "1",
                    "9223372036854775807",
                    "9223372036854775808",
                ]
            )
        )
        template = draw(
            st.sampled_from(
                [
                    "'price' > {}",
                    "'stock' == {}",
                    "'stock' * {} > 1",
                    "{} * {} > 0",
                    "'stock' + {} > 0",
                    "if 'in_stock' then {} else 1",
                    "'released' > {}",
                    "{{{}}} != {{}}",
                    "pow('stock', {}) > 1",
                ]
            )
        )
        return template.replace("{}", literal).replace("{{", "{").replace("}}", "}")
    if choice == 6:  # long and surrogate strings
        inner = draw(
            st.sampled_from(
                [
                    "\\ud800",
                    "\\udfff",
                    "a\\ud83d",
                    "\\ud83d\\ude00",
                    "\\u0000",
                    "x" * 10_001,
                    "y" * 9_980,
                    "\\" * 7,
                ]
            )
        )
        template = draw(
            st.sampled_from(
                [
                    "'title' == \"{}\"",
                    "\"{}\" in 'tags'",
                    "matches('title', \"{}\")",
                    "'{}' > 1",
                    'context_item["{}"] == 1',
                    '{{"{}": 1}}["{}"] == 1',
                ]
            )
        )
        return template.replace("{}", inner).replace("{{", "{").replace("}}", "}")
    if choice == 7:  # random text
        return draw(st.one_of(st.text(max_size=40), surrogate_text()))
    if choice == 8:  # combinations of valid expressions
        parts = draw(st.lists(st.sampled_from(VALID_REQL), min_size=2, max_size=5))
        glue = draw(st.sampled_from([" and ", " or ", " + ", " == ", " in ", " < "]))
        return glue.join(f"({p})" for p in parts)
    # a long flat chain (and/or stays flat in reqo), or many function calls
    n = draw(st.integers(10, 2000))
    return draw(
        st.sampled_from(
            [
                " and ".join(["'price' > 1"] * n),
                " or ".join(["'in_stock'"] * n),
                "size(" * min(n, 200) + "'tags'" + ")" * min(n, 200) + " > 0",
                "matches('title', \"" + "(a*)*" * min(n, 50) + 'b")',
            ]
        )
    )


@functools.cache
@st.composite
def reql_requests(draw: st.DrawFn) -> FuzzRequest:
    """A ReQL text as `filter` / `booster` / a reqlExpression of a recommendation or a list."""
    text = draw(reql_texts())
    where = draw(st.integers(0, 6))
    if where <= 3:
        path = draw(st.sampled_from(RECOMMEND_PATHS[:4]))
        param = draw(st.sampled_from(["filter", "booster", "filter", "reqlExpressions"]))
        value = json.dumps({"e": text}) if param == "reqlExpressions" else jstr(text)
        fields = [("count", "3"), (param, value)]
        if where == 3:
            fields.append(("returnProperties", "true"))
        return FuzzRequest("reql-recommend", "POST", path, json_object(fields).encode())
    if where == 4:
        path = draw(st.sampled_from(["/items/list/", "/users/list/"]))
        return FuzzRequest("reql-list", "GET", path + "?" + encode_query([("filter", text)]))
    if where == 5:
        path = draw(st.sampled_from(["/items/list/", "/users/list/"]))
        body = json_object([("filter", jstr(text)), ("count", "5")]).encode()
        return FuzzRequest("reql-list", "GET", path, body)
    # Update More Items with changes that set nothing real is harmless; Delete More Items
    # would empty the catalog, so its filter matches nothing that exists.
    if draw(st.booleans()):
        body = json_object([("filter", jstr(text)), ("changes", '{"nosuch": 1}')]).encode()
        return FuzzRequest("reql-more-items", "POST", "/more-items/", body)
    guarded = f"({text}) and 'itemId' == \"no-such-item\""
    body = json_object([("filter", jstr(guarded))]).encode()
    return FuzzRequest("reql-more-items", "DELETE", "/more-items/", body)
