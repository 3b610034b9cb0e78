"""Ids, property names, property values and timestamps are validated as Recombee does."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from storage.errors import BadParameter, InvalidInput
from storage.schema import (
    Entity,
    PropertyInfo,
    PropertyType,
    coerce_value,
    parse_property_type,
    validate_id,
    validate_property_name,
)
from storage.timestamps import datetime_to_epoch, parse_timestamp, us_to_datetime


@pytest.mark.parametrize("good", ["a", "item-42", "user@example.com", "a:b_c.d", "X" * 256])
def test_valid_ids(good: str) -> None:
    assert validate_id(good, "itemId") == good


@pytest.mark.parametrize("bad", ["", "a b", "a/b", "ü", "a#b", "x" * 257, 42, None, "undefined"])
def test_invalid_ids(bad: Any) -> None:
    with pytest.raises(BadParameter) as caught:
        validate_id(bad, "itemId")
    assert caught.value.parameter == "itemId"


def test_property_names() -> None:
    assert validate_property_name(Entity.ITEM, "release-date:v2") == "release-date:v2"
    assert validate_property_name(Entity.ITEM, "userId") == "userId"  # reserved only for users
    for bad in ("id", "ItemId", "a.b", "a b", "", "x" * 64):
        with pytest.raises(BadParameter):
            validate_property_name(Entity.ITEM, bad)
    with pytest.raises(BadParameter, match="reserved"):
        validate_property_name(Entity.USER, "USERID")


def test_property_types() -> None:
    assert parse_property_type(Entity.ITEM, "imageList") is PropertyType.IMAGE_LIST
    with pytest.raises(BadParameter, match="not allowed"):
        parse_property_type(Entity.USER, "image")
    with pytest.raises(BadParameter, match="required"):
        parse_property_type(Entity.ITEM, None)


@pytest.mark.parametrize(
    ("ptype", "given", "stored"),
    [
        (PropertyType.INT, 3, 3),
        (PropertyType.INT, 3.0, 3),
        (PropertyType.DOUBLE, 3, 3.0),
        (PropertyType.STRING, "x", "x"),
        (PropertyType.BOOLEAN, False, False),
        (PropertyType.SET, ["b", "a", "b"], ["b", "a"]),
        (PropertyType.SET, None, None),
        (PropertyType.IMAGE_LIST, [], []),
        (PropertyType.INT, None, None),
        (PropertyType.TIMESTAMP, 1.5, datetime(1970, 1, 1, 0, 0, 1, 500000)),
        (PropertyType.TIMESTAMP, "2024-01-02T03:04:05+01:00", datetime(2024, 1, 2, 2, 4, 5)),
    ],
)
def test_values_are_coerced(ptype: PropertyType, given: Any, stored: Any) -> None:
    assert coerce_value(PropertyInfo("p", ptype), given) == stored


@pytest.mark.parametrize(
    ("ptype", "given"),
    [
        (PropertyType.INT, "3"),
        (PropertyType.INT, 3.5),
        (PropertyType.INT, True),
        (PropertyType.INT, 2**63),
        (PropertyType.DOUBLE, "1.0"),
        (PropertyType.DOUBLE, float("nan")),
        (PropertyType.STRING, 5),
        (PropertyType.BOOLEAN, "true"),
        (PropertyType.SET, "a"),
        (PropertyType.SET, ["a", 1]),
        (PropertyType.IMAGE, ["x"]),
        (PropertyType.TIMESTAMP, "not a date"),
        (PropertyType.TIMESTAMP, -1),
    ],
)
def test_values_of_the_wrong_type_are_refused(ptype: PropertyType, given: Any) -> None:
    with pytest.raises(InvalidInput, match="'p'"):
        coerce_value(PropertyInfo("p", ptype), given)


def test_timestamps() -> None:
    assert parse_timestamp(1348151906) == 1_348_151_906_000_000
    assert parse_timestamp("1348151906.25") == 1_348_151_906_250_000
    assert parse_timestamp("2012-09-20T14:38:26Z") == 1_348_151_906_000_000
    assert parse_timestamp("2012-09-20T14:38:26") == 1_348_151_906_000_000  # naive is UTC
    assert parse_timestamp("2012-09-20T16:38:26+02:00") == 1_348_151_906_000_000
    for bad in ("tomorrow", -1, True, None, "1e400", 1e13):
        with pytest.raises(BadParameter):
            parse_timestamp(bad)
    moment = us_to_datetime(1_348_151_906_123_456)
    assert datetime_to_epoch(moment) == pytest.approx(1348151906.123456)
