"""How a server's search indexes follow its copy of the database: from the change feed's
entries, which items to index again (or the whole index, where properties changed); and where
the semantic index's vectors are cached (the database's cache, filled through the writer)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from plugins.embedders import EmbedderKey
from plugins.manager import Registry
from server.search.fulltext import FullTextIndex
from server.search.semantic import SemanticIndex, Vector
from storage.database import Database
from storage.text_vectors import cached, payloads

logger = logging.getLogger("reqo")

Send = Callable[[dict[str, Any]], Awaitable[Any]]
"""Hands a `text-vectors` write's payload to the writer."""
SEND_AT_ONCE = 1_000
"""Vectors per `text-vectors` write (about 2 MB of base64 at 384 dimensions)."""

_ITEM_WRITES = frozenset({"add item", "delete item", "set item values"})
_WHOLE = frozenset({"reset database", "add item property", "delete item property"})
_SYNONYMS = frozenset({"add search synonym", "delete search synonym", "delete all search synonyms"})
_SERIES = frozenset({"add series", "delete series", "insert to series"})
"""Series writes that create (cascadeCreate) or delete (cascadeDelete) items."""


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
                elif operation in _SERIES:
                    changes.items.add(str(call["args"]["seriesId"]))
                    member = {**(call.get("query") or {}), **(call.get("body") or {})}
                    if isinstance(member.get("itemId"), str):
                        changes.items.add(member["itemId"])
        elif command == "selected":
            selected = entry.get("selected")
            if entry.get("op") == "delete more items" and isinstance(selected, list):
                changes.items.update(map(str, selected))
            elif entry.get("op") == "update more items" and isinstance(selected, list):
                changes.items.update(map(str, selected[0]))
    return changes


class DatabaseVectorCache:
    """The text vector cache of a database (storage/text_vectors.py): read from this server's
    copy (what its snapshot held), new vectors sent to the writer without waiting."""

    def __init__(
        self,
        database: Database,
        key: EmbedderKey,
        send: Send | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.database = database
        self.key = key
        self.send = send
        self.loop = loop

    def lookup(self, hashes: Sequence[str]) -> dict[str, Vector]:
        name, digest = self.key.name, self.key.settings_digest
        return self.database.read_sync(lambda ctx: cached(ctx, name, digest, hashes))

    def keep(self, vectors: Mapping[str, Vector]) -> None:
        if self.send is None or not vectors or self.loop.is_closed():
            return
        key = self.key
        for payload in payloads(key.name, key.settings_digest, vectors, SEND_AT_ONCE):
            future = asyncio.run_coroutine_threadsafe(_awaited(self.send(payload)), self.loop)
            future.add_done_callback(_unsent)


async def _awaited(pending: Awaitable[Any]) -> Any:
    return await pending


def _unsent(future: Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        # A cache: the vectors are embedded again where they are missing.
        logger.warning("text vectors not cached: %s", future.exception())


class SearchFollower:
    """Keeps a database's full-text index, and its semantic indexes (one per text embedder
    that a search has named), in step with the server's copy. `send`: where new text vectors
    go to be cached (None: nowhere)."""

    def __init__(self, database: Database, registry: Registry, send: Send | None = None) -> None:
        self.database = database
        self.registry = registry
        self.send = send
        self.index = FullTextIndex()
        self.semantic: dict[str, SemanticIndex] = {}

    async def semantic_index(self, embedder: str) -> SemanticIndex:
        """The semantic index of a text embedder (created, and its items queued, on first
        use)."""
        found = self.semantic.get(embedder)
        if found is None:
            model = self.registry.text_embedder(embedder)()
            loop = asyncio.get_running_loop()
            cache = DatabaseVectorCache(self.database, model.key, self.send, loop)
            found = SemanticIndex(model, cache, self.database.name)
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
