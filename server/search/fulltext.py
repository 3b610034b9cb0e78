"""Full-text search over a database's items: an in-memory tantivy index per server process.

Why tantivy: it is a Lucene-like engine (BM25, positions for phrases, fuzzy and prefix terms,
per-field boosts) that adds and deletes documents incrementally, which a catalog that changes
under live traffic needs. `bm25s` scores BM25 fast but builds a static index (every change a
rebuild) and knows no typos, prefixes or phrases; DuckDB's `fts` extension is static too
(`PRAGMA create_fts_index` over the whole table) and is downloaded at run time.

Every string and set property of the items is a field of its own (so that a scenario weighs its
fields at query time), plus the item's id and its dense index. The index is built from the
server's copy of the database at start-up (and after a snapshot replaces the copy), and follows
the change feed: the items that a batch of entries touched are indexed again before the copy
counts the batch as applied, so a request sees its own writes here as everywhere.

A query is tokenized as the index is (lower case, split on what is not a letter or a digit); each
word matches exactly (BM25) or, from 4 letters, with one typo (two from 8), and the last word also
as a prefix (a search box types it); two or more words also match as a phrase, weighed higher.
Synonyms (storage/synonyms.py) add their terms as alternatives.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import tantivy

from storage.contexts import ReadContext
from storage.schema import ID_COLUMN, INDEX_COLUMN, PropertyType, quote_identifier
from storage.synonyms import expansions, normalise

SEARCHABLE = (PropertyType.STRING, PropertyType.SET)
"""The property types that are indexed."""
MAX_QUERY_LENGTH = 1000
"""The longest search query, in characters."""
MAX_QUERY_WORDS = 32
"""Words of a query past this many are not searched (each costs a few term lookups)."""
_WORD = re.compile(r"[^\W_]+")
_HEAP_BYTES = 50_000_000
_FUZZY_WEIGHT = 0.3
_PREFIX_WEIGHT = 0.5
_PHRASE_WEIGHT = 2.0
_SYNONYM_WEIGHT = 0.8
_MAX_TOKEN = 40
"""tantivy's default tokenizer drops longer words."""
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "he",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "to",
        "was",
        "were",
        "will",
        "with",
    ]
)
"""English words too common to match on alone (a query of nothing else still searches them)."""


def words(text: str) -> list[str]:
    """A text's words as the index holds them."""
    return [w for w in _WORD.findall(text.lower()) if len(w) <= _MAX_TOKEN]


@dataclass(frozen=True)
class Hit:
    """An item that a query found: its dense index, id and text relevance."""

    index: int
    item_id: str
    score: float


class _Built:
    """One built index, its fields by property, and the synonyms in force."""

    def __init__(self, properties: Sequence[str]) -> None:
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("id", stored=True, tokenizer_name="raw")
        builder.add_integer_field("idx", stored=True)
        self.fields = {name: f"p{position}" for position, name in enumerate(properties)}
        for field in self.fields.values():
            builder.add_text_field(field, stored=False)
        self.schema = builder.build()
        self.index = tantivy.Index(self.schema)
        self.writer = self.index.writer(heap_size=_HEAP_BYTES, num_threads=1)
        self.synonyms: dict[str, tuple[str, ...]] = {}

    def add(self, rows: Iterable[tuple[Any, ...]]) -> None:
        names = list(self.fields.values())
        for row in rows:
            document = tantivy.Document()
            document.add_text("id", str(row[0]))
            document.add_integer("idx", int(row[1]))
            for field, value in zip(names, row[2:], strict=True):
                if value is None:
                    continue
                text = " ; ".join(map(str, value)) if isinstance(value, list) else str(value)
                document.add_text(field, text)
            self.writer.add_document(document)

    def commit(self) -> None:
        self.writer.commit()
        self.index.reload()


class FullTextIndex:
    """The searchable text of one database's items (thread-safe: searches run on reader
    threads while the feed's changes are applied)."""

    def __init__(self) -> None:
        self._built: _Built | None = None
        self._lock = threading.Lock()

    @property
    def properties(self) -> list[str]:
        """The indexed properties."""
        built = self._built
        return list(built.fields) if built is not None else []

    def rebuild(self, ctx: ReadContext) -> None:
        """Index every item of the database afresh."""
        properties = searchable_properties(ctx)
        built = _Built(properties)
        built.add(searchable_rows(ctx, properties, None))
        built.commit()
        built.synonyms = expansions(ctx)
        with self._lock:
            self._built = built

    def update(self, ctx: ReadContext, item_ids: set[str], synonyms_changed: bool) -> None:
        """Index again the items of `item_ids` (those deleted since are removed)."""
        with self._lock:
            built = self._built
            if built is None:
                return
            if item_ids:
                for item_id in item_ids:
                    built.writer.delete_documents_by_term("id", item_id)
                built.add(searchable_rows(ctx, list(built.fields), sorted(item_ids)))
                built.commit()
            if synonyms_changed:
                built.synonyms = expansions(ctx)

    def search(
        self,
        text: str,
        weights: Mapping[str, float] | None,
        limit: int,
        *,
        plain_bm25: bool = False,
    ) -> list[Hit]:
        """The best `limit` items for a query, most relevant first. `weights`: the fields to
        search by property, with their weights (None: every indexed property, weight 1).
        `plain_bm25`: the words' exact matches only, no typos, prefixes, phrases or synonyms
        (the benchmarks' baseline)."""
        built = self._built
        if built is None:
            return []
        fields = {
            built.fields[name]: weight
            for name, weight in (weights or dict.fromkeys(built.fields, 1.0)).items()
            if name in built.fields and weight > 0
        }
        query = _query(built, text, fields, plain_bm25=plain_bm25)
        if query is None:
            return []
        searcher = built.index.searcher()
        hits = []
        for score, address in searcher.search(query, limit).hits:
            document = searcher.doc(address)
            hits.append(Hit(int(document["idx"][0]), str(document["id"][0]), float(score)))
        return hits

    def synonym_variants(self, text: str, limit: int) -> list[str]:
        """The query with one of its terms replaced by a synonym, up to `limit` of them (for
        semantic search, which has no terms to add alternatives to)."""
        built = self._built
        if built is None or not built.synonyms or limit <= 0:
            return []
        spaced = f" {' '.join(words(text))} "
        variants: list[str] = []
        for term, alternatives in sorted(built.synonyms.items()):
            found = f" {' '.join(words(term))} "
            if found.strip() and found in spaced:
                for alternative in alternatives:
                    variant = spaced.replace(found, f" {normalise(alternative)} ", 1).strip()
                    if variant and variant not in variants:
                        variants.append(variant)
                    if len(variants) >= limit:
                        return variants
        return variants


def searchable_properties(ctx: ReadContext) -> list[str]:
    """The items' string and set properties, in creation order."""
    return [p.name for p in ctx.schema.items.properties if p.type in SEARCHABLE]


def searchable_rows(
    ctx: ReadContext, properties: Sequence[str], item_ids: Sequence[str] | None
) -> list[tuple[Any, ...]]:
    """(id, dense index, each property's value) of the items (all, or those of `item_ids`)."""
    columns = "".join(f", {quote_identifier(name)}" for name in properties)
    keys = f"{quote_identifier(ID_COLUMN)}, {quote_identifier(INDEX_COLUMN)}"
    sql = f"SELECT {keys}{columns} FROM items"
    if item_ids is None:
        return ctx.conn.execute(sql).fetchall()
    sql += f" WHERE {quote_identifier(ID_COLUMN)} IN (SELECT unnest(?::VARCHAR[]))"
    return ctx.conn.execute(sql, [list(item_ids)]).fetchall()


def _query(
    built: _Built, text: str, fields: Mapping[str, float], *, plain_bm25: bool = False
) -> tantivy.Query | None:
    tokens = words(text)[:MAX_QUERY_WORDS]
    if not tokens or not fields:
        return None
    # Stop words only count inside phrases (and where the query has nothing else).
    content = [token for token in tokens if token not in STOP_WORDS] or tokens
    schema, should = built.schema, tantivy.Occur.Should
    clauses: list[tuple[tantivy.Occur, tantivy.Query]] = []
    for field, weight in fields.items():
        for position, token in enumerate(content):
            term = tantivy.Query.term_query(schema, field, token)
            clauses.append((should, tantivy.Query.boost_query(term, weight)))
            if plain_bm25:
                continue
            if len(token) >= 4:
                typo = tantivy.Query.fuzzy_term_query(
                    schema, field, token, distance=1 if len(token) < 8 else 2
                )
                clauses.append((should, tantivy.Query.boost_query(typo, _FUZZY_WEIGHT * weight)))
            if position == len(content) - 1 and len(token) >= 2:
                prefix = tantivy.Query.fuzzy_term_query(
                    schema, field, token, distance=0, prefix=True
                )
                clauses.append((should, tantivy.Query.boost_query(prefix, _PREFIX_WEIGHT * weight)))
        if plain_bm25:
            continue
        if len(tokens) >= 2:
            phrase = tantivy.Query.phrase_query(schema, field, list[str | tuple[int, str]](tokens))
            clauses.append((should, tantivy.Query.boost_query(phrase, _PHRASE_WEIGHT * weight)))
        for alternative in _synonyms(built.synonyms, tokens):
            if len(alternative) == 1:
                found = tantivy.Query.term_query(schema, field, alternative[0])
            else:
                found = tantivy.Query.phrase_query(
                    schema, field, list[str | tuple[int, str]](alternative)
                )
            clauses.append((should, tantivy.Query.boost_query(found, _SYNONYM_WEIGHT * weight)))
    return tantivy.Query.boolean_query(clauses)


def _synonyms(synonyms: Mapping[str, tuple[str, ...]], tokens: Sequence[str]) -> list[list[str]]:
    """The synonyms' words of every term (a word or a phrase) that the query holds."""
    if not synonyms:
        return []
    spaced = f" {' '.join(tokens)} "
    found = []
    for term, alternatives in synonyms.items():
        if f" {' '.join(words(term))} " in spaced:
            for alternative in alternatives:
                alternative_words = words(normalise(alternative))
                if alternative_words:
                    found.append(alternative_words)
    return found
