"""A small film catalog for HTTP tests of models over other models (ensembles, stackers): films
of three genres, and users who mostly view films of one of them."""

from __future__ import annotations

import random

from recombee_api_client.api_requests import AddDetailView, AddItemProperty, SetItemValues

from tests.serving import RunningServer

GENRES = ["action", "comedy", "drama"]


def view_films(
    server: RunningServer, *, films: int, users: int, seed: int, off_taste: float
) -> dict[str, set[str]]:
    """Films f00.. with a `genre`, and seeded detail views: user u<n> views each film of genre
    n mod 3 with probability 0.5 and any other with `off_taste` (uneven tastes, so that the
    members' scores seldom tie). Each user's viewed films."""
    client = server.client()
    client.send(AddItemProperty("genre", "string"))
    for i in range(films):
        client.send(SetItemValues(f"f{i:02d}", {"genre": GENRES[i % 3]}, cascade_create=True))
    rng = random.Random(seed)
    seen: dict[str, set[str]] = {}
    for user in range(users):
        for film in range(films):
            if rng.random() < (0.5 if film % 3 == user % 3 else off_taste):
                client.send(AddDetailView(f"u{user}", f"f{film:02d}", cascade_create=True))
                seen.setdefault(f"u{user}", set()).add(f"f{film:02d}")
    return seen
