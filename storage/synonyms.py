"""Search synonyms (Recombee's Add / List / Delete Search Synonym): a term and a word or phrase
that full-text search treats as equal to it, both ways unless `oneWay`.

A synonym's id is derived from its term and synonym, so that the writer and every server's copy
(which apply the same write from the change feed) give it the same id.
"""

from __future__ import annotations

import uuid
from typing import Any

from storage.contexts import ReadContext, WriteContext
from storage.errors import BadParameter, Conflict, NotFound

MAX_LENGTH = 200
"""The longest term or synonym, in characters."""

_NAMESPACE = uuid.UUID("6f1c2a8e-3b6d-4f0e-9c51-2d7a5e4b8f10")


def normalise(text: str) -> str:
    """A term as search compares it: lower case, single spaces."""
    return " ".join(text.lower().split())


def _checked(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise BadParameter(name, f"must be a string, got {type(value).__name__}")
    text = normalise(value)
    if not text:
        raise BadParameter(name, "must not be empty")
    if len(text) > MAX_LENGTH:
        raise BadParameter(name, f"is longer than {MAX_LENGTH} characters")
    if any(ord(c) < 32 for c in text):
        raise BadParameter(name, "must not hold control characters")
    return text


def _json(row: tuple[Any, ...]) -> dict[str, Any]:
    return {"id": row[0], "term": row[1], "synonym": row[2], "oneWay": row[3]}


def add_synonym(ctx: WriteContext, term: object, synonym: object, one_way: bool) -> dict[str, Any]:
    """Store a synonym; 409 where the same term and synonym are stored already."""
    term_text, synonym_text = _checked("term", term), _checked("synonym", synonym)
    if term_text == synonym_text:
        raise BadParameter("synonym", "is the term itself")
    found = ctx.conn.execute(
        "SELECT id FROM search_synonyms WHERE term = ? AND synonym = ?", [term_text, synonym_text]
    ).fetchone()
    if found is not None:
        raise Conflict(f"the synonym '{synonym_text}' of '{term_text}' exists already")
    row = (str(uuid.uuid5(_NAMESPACE, f"{term_text}\0{synonym_text}")), term_text, synonym_text)
    ctx.conn.execute("INSERT INTO search_synonyms VALUES (?, ?, ?, ?)", [*row, one_way])
    return _json((*row, one_way))


def list_synonyms(ctx: ReadContext, count: int | None, offset: int) -> dict[str, Any]:
    """Synonyms ordered by term (then synonym)."""
    rows = ctx.conn.execute(
        "SELECT id, term, synonym, one_way FROM search_synonyms ORDER BY term, synonym "
        "LIMIT ? OFFSET ?",
        [count if count is not None else 2**62, offset],
    ).fetchall()
    return {"synonyms": [_json(row) for row in rows]}


def delete_synonym(ctx: WriteContext, synonym_id: str) -> str:
    found = ctx.conn.execute(
        "DELETE FROM search_synonyms WHERE id = ? RETURNING id", [synonym_id]
    ).fetchone()
    if found is None:
        raise NotFound(f"synonym '{synonym_id}' does not exist")
    return "ok"


def delete_all_synonyms(ctx: WriteContext) -> str:
    ctx.conn.execute("DELETE FROM search_synonyms")
    return "ok"


def expansions(ctx: ReadContext) -> dict[str, tuple[str, ...]]:
    """For each term or phrase, what else a query holding it also searches for."""
    found: dict[str, list[str]] = {}
    rows = ctx.conn.execute("SELECT term, synonym, one_way FROM search_synonyms").fetchall()
    for term, synonym, one_way in rows:
        found.setdefault(term, []).append(synonym)
        if not one_way:
            found.setdefault(synonym, []).append(term)
    return {term: tuple(sorted(set(words))) for term, words in found.items()}
