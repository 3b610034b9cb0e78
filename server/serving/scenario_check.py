"""The scenarios' ReQL and property names, checked against each database's schema: at start-up,
on a reload (which a mistake refuses, the old scenarios serving on) and by `reqo check`, never
at the first request of a scenario."""

from __future__ import annotations

from collections.abc import Mapping

import reql
from server.config import Config, ConfigError
from server.search.fulltext import SEARCHABLE
from server.serving.expressions import BadExpression, compile_for
from storage.schema import Entity, Schema

CONTEXTS: dict[str, tuple[bool, bool]] = {
    "items-to-user": (False, True),
    "items-to-item": (True, True),
    "users-to-item": (True, False),
    "users-to-user": (False, True),
    "items-to-image": (False, True),
    "search-items": (False, True),
    "items-to-item-segment": (False, True),
    "item-segments-to-user": (False, True),
    "item-segments-to-item": (True, True),
    "item-segments-to-item-segment": (False, True),
    "search-item-segments": (False, True),
    "composite": (True, True),
}
"""Whether an endpoint's requests can carry a context item and a context user."""


def check_scenarios(
    config: Config,
    schemas: Mapping[str, Schema],
    functions: reql.FunctionRegistry = reql.BUILTIN_FUNCTIONS,
) -> None:
    """Compile every scenario's `filter` and `booster` and look up its `included_properties`
    on each database's schema; the first mistake is a ConfigError naming the key, the database
    and ReQL's report (line, column and caret).

    A database whose candidates have no properties at all is not set up yet (a new database
    whose catalog arrives after the server starts): there the expressions are only parsed, and
    the reload after its properties exist checks them whole."""
    for database, schema in sorted(schemas.items()):
        for name, scenario in config.scenarios.items():
            # Every endpoint but Users to Item / to User evaluates ReQL over items (segment
            # endpoints too: server/serving/segments.py).
            entity = Entity.USER if scenario.endpoint.startswith("users") else Entity.ITEM
            context_item, context_user = CONTEXTS[scenario.endpoint]
            known = schema.of(entity).names
            expressions = (
                ("filter", scenario.filter, reql.Purpose.FILTER),
                ("booster", scenario.booster, reql.Purpose.BOOSTER),
            )
            for key, text, purpose in expressions:
                if not text:
                    continue
                try:
                    if not known:
                        reql.parse(text)
                        continue
                    compile_for(
                        schema,
                        text,
                        purpose,
                        parameter=key,
                        candidate=entity,
                        context_item=context_item,
                        context_user=context_user,
                        functions=functions,
                    )
                except BadExpression as error:
                    raise ConfigError(
                        config.source,
                        f"scenarios.{name}.{key}",
                        f"does not compile on database '{database}':\n{error.reql_error}",
                    ) from None
                except reql.ReqlError as error:
                    raise ConfigError(
                        config.source, f"scenarios.{name}.{key}", f"is not ReQL:\n{error}"
                    ) from None
            for prop in scenario.search_fields or ():
                found = schema.items.get(prop) if known else None
                if known and (found is None or found.type not in SEARCHABLE):
                    what = "no" if found is None else f"a {found.type.value} (not searchable)"
                    raise ConfigError(
                        config.source,
                        f"scenarios.{name}.search_fields.{prop}",
                        f"database '{database}' has {what} item property '{prop}' (searchable: "
                        "string and set properties)",
                    )
            for position, prop in enumerate(scenario.included_properties or ()):
                if known and prop not in known:
                    raise ConfigError(
                        config.source,
                        f"scenarios.{name}.included_properties[{position}]",
                        f"database '{database}' has no {entity.value} property '{prop}' "
                        f"(it has: {', '.join(known) or 'none'})",
                    )
