"""Cold-start splits: new items and new users.

- `cold_items_split`: a seeded share of the items (of those with interactions) is new: every
  interaction with them is the test, none is trained on; the test users are those who
  interacted with a cold item, scored from their (warm) train interactions;
- `cold_users_split`: a seeded share of the users is new: each keeps at most its first
  `keep` interactions (by time) in train, the rest are the test; the other users train on all.

Both return one part code per interaction (TRAIN or TEST: there is no validation part, since
the cold items or users are the test), in the order of the arrays given, like `splits`.
`UserPropertyRows` hands the users' property values to the models that score new users.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from plugins.evaluation.splits import TEST, Int64s, Parts, SplitError

Floats = np.ndarray[Any, np.dtype[np.float64]]
Bools = np.ndarray[Any, np.dtype[np.bool_]]

COLD_SHARE = 0.1
"""The share of items (cold-items) or users (cold-users) that are new, unless told."""
COLD_USER_INTERACTIONS = 0
"""How many train interactions a new user keeps, unless told: none, so that the user is known
by properties alone (the hardest case; 1 to 5 measures the first few interactions)."""


def pick(population: Int64s, share: float, seed: int) -> Int64s:
    """A seeded `share` of the population (at least one), sorted."""
    if not 0 < share < 1:
        raise SplitError(f"the cold share must be between 0 and 1 (exclusive), not {share}")
    if not len(population):
        raise SplitError("there is nothing to choose cold items or users from")
    count = max(1, round(share * len(population)))
    chosen = np.random.default_rng(seed).choice(population, size=count, replace=False)
    return np.sort(chosen.astype(np.int64))


def cold_items_split(items: Int64s, share: float, seed: int) -> tuple[Parts, Int64s]:
    """The part of each interaction and the cold items: a seeded `share` of the items that have
    interactions, every interaction with them in the test."""
    cold = pick(np.unique(items), share, seed)
    parts = np.zeros(len(items), dtype=np.uint8)
    parts[np.isin(items, cold)] = TEST
    if (parts == TEST).all():
        raise SplitError("the cold items take every interaction: nothing is left to train on")
    return parts, cold


def cold_users_split(
    users: Int64s, timestamps: Floats, share: float, keep: int, seed: int
) -> tuple[Parts, Int64s]:
    """The part of each interaction and the cold users: a seeded `share` of the users with more
    than `keep` interactions (so that each has a test item), each keeping its first `keep`
    interactions by time (the later position breaks ties) in train, the rest in the test."""
    if keep < 0:
        raise SplitError(f"a cold user keeps 0 or more interactions, not {keep}")
    n = len(users)
    counts = np.bincount(users) if n else np.zeros(0, dtype=np.int64)
    cold = pick(np.flatnonzero(counts > keep), share, seed)
    order = np.lexsort((np.arange(n), timestamps, users))
    grouped = users[order]
    starts = np.searchsorted(grouped, grouped, side="left")
    position = np.arange(n) - starts  # each interaction's place in its user's time order
    parts = np.zeros(n, dtype=np.uint8)
    late = np.isin(grouped, cold) & (position >= keep)
    parts[order[late]] = TEST
    if (parts == TEST).all():
        raise SplitError("the cold users take every interaction: nothing is left to train on")
    return parts, cold


class UserPropertyRows:
    """Each user's property values by dense index, from the user table of a snapshot ("$idx",
    "$id" and the properties): the rows are read only for the users asked about."""

    def __init__(self, table: pa.Table | None, n_users: int) -> None:
        self.table = table
        self.position = np.full(n_users, -1, dtype=np.int64)
        if table is not None and "$idx" in table.column_names and table.num_rows:
            indexes = np.asarray(table.column("$idx").to_numpy(), dtype=np.int64)
            inside = (indexes >= 0) & (indexes < n_users)
            self.position[indexes[inside]] = np.flatnonzero(inside)

    def of(self, users: list[int]) -> list[dict[str, Any]]:
        """The users' property values by name (empty for a user without a row)."""
        if self.table is None or not users:
            return [{} for _ in users]
        positions = self.position[np.asarray(users, dtype=np.int64)]
        known = positions >= 0
        rows = self.table.take(pa.array(positions[known])).to_pylist() if known.any() else []
        found = iter(rows)
        out: list[dict[str, Any]] = []
        for present in known.tolist():
            row = next(found) if present else {}
            out.append({k: v for k, v in row.items() if not k.startswith("$")})
        return out
