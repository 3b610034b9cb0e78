"""How a server's full-text index follows its copy of the database: from the change feed's
entries, which items to index again (or the whole index, where properties changed)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from plugins.manager import Registry
from server.search.fulltext import FullTextIndex
from server.search.semantic import SemanticIndex
from storage.database import Database

_ITEM_WRITES = frozenset({"add item", "delete item", "set item values"})
_WHOLE = frozenset({"reset database", "add item property", "delete item property"})
_SYNONYMS = frozenset({"add search synonym", "delete search synonym", "delete all search synonyms"})


@dataclass
class Changes:
    """What a batch of change feed entries changed of the searchable catalog."""

    items: set[str] = field(default_factory=set)
    everything: bool = False
    synonyms: bool = False

    def __bool__(self) -> bool:
        return bool(self.items) or self.everything or self.synonyms


def changes_of(entries: Iterable[Mapping[str, Any]]) -> Changes:
    """The items (and synonyms) that change feed entries wrote."""
    changes = Changes()
    for entry in entries:
        command = entry.get("cmd")
        if command == "calls":
            for call in entry.get("calls", ()):
                operation = call.get("op")
                if operation in _ITEM_WRITES:
                    changes.items.add(str(call["args"]["itemId"]))
                elif operation in _WHOLE:
                    changes.everything = True
                elif operation in _SYNONYMS:
                    changes.synonyms = True
        elif command == "selected":
            selected = entry.get("selected")
            if entry.get("op") == "delete more items" and isinstance(selected, list):
                changes.items.update(map(str, selected))
            elif entry.get("op") == "update more items" and isinstance(selected, list):
                changes.items.update(map(str, selected[0]))
    return changes


class SearchFollower:
    """Keeps a database's full-text index, and its semantic indexes (one per text embedder
    that a search has named), in step with the server's copy."""

    def __init__(self, database: Database, registry: Registry) -> None:
        self.database = database
        self.registry = registry
        self.index = FullTextIndex()
        self.semantic: dict[str, SemanticIndex] = {}

    async def semantic_index(self, embedder: str) -> SemanticIndex:
        """The semantic index of a text embedder (created, and its items queued, on first
        use)."""
        found = self.semantic.get(embedder)
        if found is None:
            found = SemanticIndex(self.registry.text_embedder(embedder)())
            self.semantic[embedder] = found
            await self.database.read(found.rebuild)
        return found

    async def prepare(self, embedders: Iterable[str]) -> None:
        """Create the semantic indexes of these text embedders and load their models (seconds),
        before a request needs them."""
        for name in sorted(set(embedders)):
            semantic = await self.semantic_index(name)
            await asyncio.to_thread(semantic.embed_query, "warm up")

    async def rebuild(self) -> None:
        """Index the whole copy (at start-up, and after a snapshot replaced it)."""
        await self.database.read(self.index.rebuild)
        for semantic in list(self.semantic.values()):
            await self.database.read(semantic.rebuild)

    def close(self) -> None:
        for semantic in self.semantic.values():
            semantic.close()

    async def follow(self, entries: list[dict[str, Any]]) -> None:
        """Index again what a batch of applied entries changed (before the copy counts them as
        applied, so that the next request finds them)."""
        changes = changes_of(entries)
        if changes.everything:
            await self.rebuild()
        elif changes:
            await self.database.read(
                lambda ctx: self.index.update(ctx, changes.items, changes.synonyms)
            )
            if changes.items:
                for semantic in list(self.semantic.values()):
                    await self.database.read(partial(semantic.update, item_ids=changes.items))
