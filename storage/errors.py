"""Errors raised by the storage layer.

Each error carries the HTTP status that Recombee's API gives for it, so that the host can turn
any of them into a response without a lookup table.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class: a request that cannot be carried out, with the reason in words."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(StorageError):
    """A parameter or value is malformed or out of range (400)."""

    status = 400


class NotFound(StorageError):
    """An item, user, property or interaction does not exist (404)."""

    status = 404


class Conflict(StorageError):
    """The entity already exists, or the write conflicts with stored data (409)."""

    status = 409


class TooLarge(StorageError):
    """A request carries more than the allowed number of parts (413)."""

    status = 413


class DiskFull(StorageError):
    """The filesystem that holds the database has no room for the write (507 Insufficient
    Storage). Nothing of the refused write is stored, so the client may send it again once an
    operator has freed space; the database takes writes again by itself then."""

    status = 507

    def __init__(self, database: str, consequence: str = "the write was not stored") -> None:
        super().__init__(
            f"the disk holding database '{database}' is full: {consequence}; "
            "retry when space is freed"
        )
        self.database = database


class BadParameter(InvalidInput):
    """A named parameter has a bad value."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"parameter '{name}': {problem}")
        self.parameter = name


class UnknownProperty(NotFound):
    """A property that the entity type does not have."""

    def __init__(self, entity: str, name: str) -> None:
        super().__init__(f"{entity} property '{name}' does not exist")
        self.property = name


class EntityNotFound(NotFound):
    """An item or user id that is not in the database."""

    def __init__(self, entity: str, entity_id: str) -> None:
        super().__init__(f"{entity} '{entity_id}' not found")
        self.entity_id = entity_id
