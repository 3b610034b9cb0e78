"""The functions of REQL.md, as registry entries (one module per group)."""

from __future__ import annotations

from reql.builtins import general, interactions, lists, numeric, text
from reql.builtins.interactions import INTERACTION_TYPES
from reql.functions import FunctionRegistry

BUILTIN_FUNCTIONS = FunctionRegistry(
    [
        *general.FUNCTIONS,
        *numeric.FUNCTIONS,
        *text.FUNCTIONS,
        *lists.FUNCTIONS,
        *interactions.FUNCTIONS,
    ]
)

__all__ = ["BUILTIN_FUNCTIONS", "INTERACTION_TYPES"]
