"""What `reqo optimize --params` may search: each parameter's space, parsed from the command line
and checked against the algorithm's `Parameter` (kind, minimum, maximum, choices) before any fit.

    MODEL.PARAM=LOW:HIGH        a number in [LOW, HIGH]: on a log scale where LOW > 0 and
                                HIGH >= 10 x LOW (a regularisation, a learning rate), else linear
    MODEL.PARAM=LOW:HIGH:log    a log scale (LOW > 0);  MODEL.PARAM=LOW:HIGH:lin  a linear one
    MODEL.PARAM=A|B|C           one of the choices: a string parameter's declared choices,
                                true|false for a flag, or numbers

Entries are separated by commas; MODEL may be left out when one model is searched. An integer
parameter is rounded, a float to 4 significant digits (closer values are the same fit): a search
keys its fits by these values, so a value is fitted once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from plugins.algorithm import Algorithm, Parameter, ParameterError
from plugins.evaluation.harness import ModelSpec

ParamValue = float | int | str | bool
ParamValues = tuple[tuple[str, ParamValue], ...]
"""A model's searched parameters, as (name, value) pairs in a fixed order."""
LOG_SPAN = 10.0
"""Positive bounds this far apart (a factor) are searched on a log scale unless told `:lin`."""
SIGNIFICANT = 4
"""A searched float keeps this many significant digits."""
SCALES = ("log", "lin")


class SearchError(ValueError):
    """A search that cannot be run: `option` names the setting, as the command line does."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")
        self.option = option
        self.problem = problem


@dataclass(frozen=True)
class Tunable:
    """A model parameter to search: a number between `low` and `high` (rounded where `integer`,
    on a log scale where `log`), or one of `choices` where they are given."""

    member: str
    parameter: str
    low: float = 0.0
    high: float = 1.0
    integer: bool = False
    log: bool = False
    choices: tuple[ParamValue, ...] = ()

    @property
    def categorical(self) -> bool:
        """Whether the parameter takes one of `choices` (else a number in the bounds)."""
        return bool(self.choices)

    def value(self, unit: float) -> ParamValue:
        """The parameter's value at a point of [0, 1] (each choice owns an equal share)."""
        unit = min(max(float(unit), 0.0), 1.0)
        if self.choices:
            return self.choices[min(int(unit * len(self.choices)), len(self.choices) - 1)]
        if self.log:
            value = math.exp(math.log(self.low) + unit * math.log(self.high / self.low))
        else:
            value = self.low + (self.high - self.low) * unit
        if self.integer:
            return min(max(round(value), math.ceil(self.low)), math.floor(self.high))
        return min(max(float(f"{value:.{SIGNIFICANT}g}"), self.low), self.high)

    def unit(self, value: ParamValue) -> float:
        """Where a value lies in [0, 1] (clipped; the middle of its share for a choice)."""
        if self.choices:
            found = self.choices.index(value) if value in self.choices else 0
            return (found + 0.5) / len(self.choices)
        number = min(max(float(value), self.low), self.high)
        if self.log:
            return math.log(number / self.low) / math.log(self.high / self.low)
        return (number - self.low) / (self.high - self.low)

    def clip(self, value: ParamValue) -> ParamValue:
        """The value where it is in the space, else the space's nearest value (for a choice:
        the first)."""
        if self.choices:
            return value if value in self.choices else self.choices[0]
        if isinstance(value, int | float) and self.low <= value <= self.high:
            return value
        return self.value(self.unit(value) if isinstance(value, int | float) else 0.5)

    def describe(self) -> str:
        """ "l2 in [1, 1e+04] (log)", "loss in {cross-entropy, bce}"."""
        if self.choices:
            return f"{self.parameter} in {{{', '.join(_text(c) for c in self.choices)}}}"
        kind = "integer, " if self.integer else ""
        scale = "log" if self.log else "linear"
        return f"{self.parameter} in [{self.low:g}, {self.high:g}] ({kind}{scale})"


def parse_tunables(
    text: str, members: Mapping[str, ModelSpec], what: str = "member"
) -> tuple[Tunable, ...]:
    """ "ease.l2=10:1000,sasrec.loss=cross-entropy|bce" -> tunables, each bound or choice
    checked against the algorithm's Parameter; SearchError naming --params otherwise. `what`
    names the models in messages ("member" of an ensemble, "model")."""
    tunables = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        target, equals, space = part.partition("=")
        member, _, parameter = target.strip().rpartition(".")
        if not member and len(members) == 1:
            member = next(iter(members))
        if not equals or not space.strip() or not member or not parameter:
            raise SearchError(
                "--params", f"{part!r} is not {what}.parameter=low:high or {what}.parameter=a|b"
            )
        spec = members.get(member)
        if spec is None:
            raise SearchError("--params", f"'{member}' is not a {what} ({', '.join(members)})")
        found = {p.name: p for p in spec.algorithm.parameters}.get(parameter)
        if found is None or not _searchable(found):
            listed = ", ".join(searchable(spec.algorithm)) or "none"
            raise SearchError(
                "--params", f"'{parameter}' is not a searchable parameter of {member} ({listed})"
            )
        if "|" in space:
            tunables.append(_choices(part, member, spec, found, space))
        else:
            tunables.append(_range(part, member, spec, found, space))
    if len({(t.member, t.parameter) for t in tunables}) != len(tunables):
        raise SearchError("--params", "a parameter is listed twice")
    return tuple(tunables)


def searchable(algorithm: type[Algorithm]) -> list[str]:
    """The parameters of an algorithm that --params can search: numbers, flags, and strings
    with declared choices."""
    return [p.name for p in algorithm.parameters if _searchable(p)]


def _searchable(parameter: Parameter) -> bool:
    if parameter.kind is str:
        return bool(parameter.choices)
    return parameter.kind in (int, float, bool)


def _range(part: str, member: str, spec: ModelSpec, found: Parameter, space: str) -> Tunable:
    if found.kind not in (int, float):
        choices = found.choices or (True, False)
        listed = "|".join(_text(c) for c in choices)
        raise SearchError(
            "--params",
            f"{part!r}: '{found.name}' is a {found.kind.__name__}: list the choices to try, "
            f"e.g. {member}.{found.name}={listed}",
        )
    pieces = [p.strip() for p in space.split(":")]
    if len(pieces) not in (2, 3) or (len(pieces) == 3 and pieces[2] not in SCALES):
        raise SearchError("--params", f"{part!r} is not {member}.parameter=low:high[:log|:lin]")
    try:
        low, high = float(pieces[0]), float(pieces[1])
    except ValueError:
        raise SearchError("--params", f"{part!r}: the bounds must be numbers") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise SearchError("--params", f"{part!r}: the bounds must be finite numbers")
    integer = found.kind is int
    if integer and not (low.is_integer() and high.is_integer()):
        raise SearchError("--params", f"{part!r}: '{found.name}' is an integer: so are its bounds")
    if not low < high:
        raise SearchError("--params", f"{part!r}: low must be below high")
    for bound in (low, high):
        _check(part, spec, found, int(bound) if integer else bound)
    scale = pieces[2] if len(pieces) == 3 else None
    if scale == "log" and low <= 0:
        raise SearchError("--params", f"{part!r}: a log scale needs low > 0")
    log = scale == "log" or (scale is None and low > 0 and high >= LOG_SPAN * low)
    return Tunable(member, found.name, low, high, integer, log)


def _choices(part: str, member: str, spec: ModelSpec, found: Parameter, space: str) -> Tunable:
    values: list[ParamValue] = []
    for text in (t.strip() for t in space.split("|")):
        value = _convert(part, found, text)
        _check(part, spec, found, value)
        if value in values:
            raise SearchError("--params", f"{part!r}: {text!r} is listed twice")
        values.append(value)
    if len(values) < 2:
        raise SearchError("--params", f"{part!r}: give two choices or more")
    return Tunable(member, found.name, integer=found.kind is int, choices=tuple(values))


def _convert(part: str, found: Parameter, text: str) -> ParamValue:
    if found.kind is bool:
        if text.lower() not in ("true", "false"):
            raise SearchError("--params", f"{part!r}: {text!r} is not true or false")
        return text.lower() == "true"
    if found.kind is str:
        return text
    try:
        number = float(text)
    except ValueError:
        raise SearchError("--params", f"{part!r}: {text!r} is not a number") from None
    if found.kind is int:
        if not number.is_integer():
            raise SearchError("--params", f"{part!r}: {text!r} is not an integer")
        return int(number)
    return number


def _check(part: str, spec: ModelSpec, found: Parameter, value: ParamValue) -> None:
    try:
        found.validate(spec.algorithm.name, value)
    except ParameterError as error:
        raise SearchError("--params", f"{part!r}: {error.problem}") from None


def _text(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def configured(spec: ModelSpec, tunables: Sequence[Tunable]) -> dict[str, ParamValue]:
    """The model's configured values of the searched parameters (defaults filled in)."""
    settings = spec.algorithm.validate(spec.params)
    return {t.parameter: settings[t.parameter] for t in tunables}
