"""Models over other configured models (their *members*): what the ensemble and the stacker share,
so that the host binds, trains and checks them alike.

A member is named by its model name in the configuration. The host

- trains a model's members before the model (`reqo train`, the trainer, a first use);
- refuses a configuration whose member is not a configured model, or that contains itself;
- binds a loaded model to its lookup of members (`bind`), resolved at each request, so that a
  retrained member counts at once;
- binds a model that fits copies of its members while it learns (the stacker) to a factory of
  fresh, unfitted members (`bind_factory`) before it fits it.

Offline, where no host is at hand (`reqo evaluate`, the benchmarks), `with_factory` makes a
class whose models come bound to a factory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np

from plugins.algorithm import Algorithm, ParameterError, UserHistory

MemberLookup = Callable[[str], Algorithm]
"""The host's lookup of a member's current (fitted) model by name."""
ModelFactory = Callable[[str], Algorithm]
"""The host's maker of a fresh, unfitted model of a member by name, with its configured
parameters."""


class MembersUnbound(RuntimeError):
    """A model over members asked to score (or fit) before the host bound what it needs."""


class MemberModel(Algorithm):
    """Base of the models whose `members` parameter names other configured models."""

    fits_members: ClassVar[bool] = False
    """Whether fitting needs a factory of fresh members (`bind_factory`): the model fits copies
    of them itself. An ensemble's fit needs nothing."""

    _preset_factory: ClassVar[ModelFactory | None] = None

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._lookup: MemberLookup | None = None
        self._factory: ModelFactory | None = type(self)._preset_factory
        self._hosted = False

    @classmethod
    def validate(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """As Algorithm.validate, and: members are distinct non-empty names."""
        checked = super().validate(settings)
        members = checked["members"]
        if not all(isinstance(m, str) and m for m in members):
            raise ParameterError(cls.name, "members", f"must be a list of model names: {members}")
        if len(set(members)) != len(members):
            raise ParameterError(cls.name, "members", f"lists a model twice: {members}")
        checked["members"] = list(members)
        return checked

    def user_scores(self, histories: Sequence[UserHistory]) -> np.ndarray[Any, Any]:
        """Every item's score for each history: `score_users` over the whole catalog."""
        return self.score_users(histories, self.n_items)

    def item_scores(self, items: Sequence[int]) -> np.ndarray[Any, Any]:
        """Every item's score for each context item: `score_items` over the whole catalog."""
        return self.score_items(items, self.n_items)

    @property
    def members(self) -> tuple[str, ...]:
        """The names of the models this one is built on."""
        return tuple(self.settings["members"])

    def bind(self, lookup: MemberLookup) -> None:
        """Take the host's lookup of members by name, asked at each request (so that a
        retrained member counts at once)."""
        self._lookup = lookup

    def bind_factory(self, factory: ModelFactory, *, hosted: bool = False) -> None:
        """Take the host's maker of fresh, unfitted members, for a model that fits copies of
        them (`fits_members`). `hosted`: the host serves the members as models of their own
        and binds them (`bind`) once this model is loaded, so that it need keep no copies."""
        self._factory = factory
        self._hosted = hosted

    @property
    def scores_alone(self) -> bool:
        """Whether the model can score without a bound lookup (it keeps fitted copies of its
        members, or has none)."""
        return not self.members

    @classmethod
    def with_factory(cls, factory: ModelFactory) -> type[Self]:
        """A subclass (same name and parameters) whose models come bound to `factory`: for
        code that makes models from a class where no host binds them (the offline harness)."""
        return type(cls.__name__, (cls,), {"_preset_factory": staticmethod(factory)})

    def _member(self, name: str) -> Algorithm:
        """A member's current model, by the host's lookup."""
        if self._lookup is None:
            raise MembersUnbound(
                f"{self.name}: member '{name}' is not bound (the host binds members to a loaded "
                f"{self.name} before it scores)"
            )
        return self._lookup(name)

    def _fresh(self, name: str) -> Algorithm:
        """A fresh, unfitted model of a member, from the host's factory."""
        if self._factory is None:
            raise MembersUnbound(
                f"{self.name}: cannot fit member '{name}': no factory of members is bound (the "
                "host binds one before it fits the model; offline, make the class with "
                "`with_factory`)"
            )
        return self._factory(name)
