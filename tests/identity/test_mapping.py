from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from membersync.identity.mapping import (
    MAX_LEAVES,
    TRUNCATED_FIELD,
    FieldMapping,
    MappingError,
    MapRule,
    apply_mapping,
    parse_changed_at,
)
from membersync.identity.normalize import normalize_record

SETTINGS: dict[str, Any] = {
    "source": "memberful",
    "external_id": "id",
    "changed_at": "attributes.updated_at",
    "fields": {
        "attributes.email": "email",
        "attributes.full_name": {"field": "full_name", "transform": "strip"},
        "profile.phones.0": {"field": "phone"},
    },
    "ignore": ["links", "relationships"],
}
TOML = """
source = "memberful"
external_id = "id"
changed_at = "attributes.updated_at"
ignore = ["links", "relationships"]

[fields]
"attributes.email" = "email"
"attributes.full_name" = { field = "full_name", transform = "strip" }
"profile.phones.0" = { field = "phone" }
"""
RAW: dict[str, Any] = {
    "id": 1042,
    "type": "members",
    "attributes": {
        "email": "Ada@Example.com",
        "full_name": "  Ada Lovelace ",
        "updated_at": "2026-04-01T09:30:00Z",
        "plan": {"name": "gold", "seats": 3},
    },
    "profile": {"phones": ["020 7946 0018", "+1 650 253 0000"]},
    "links": {"self": "https://example.org/members/1042"},
    "relationships": {"orders": {"data": []}},
}
EXPECTED = FieldMapping(
    source="memberful",
    rules=(
        MapRule("attributes.email", "email"),
        MapRule("attributes.full_name", "full_name", "strip"),
        MapRule("profile.phones.0", "phone"),
    ),
    external_id_path="id",
    changed_at_path="attributes.updated_at",
    ignore_paths=("links", "relationships"),
)
BIG = "x" * 1_000_000


def _mapping(fields: dict[str, Any] | None = None, **settings: Any) -> FieldMapping:
    return FieldMapping.from_dict({"source": "crm", "fields": fields or {}, **settings})


def _nested_dict(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        value = {"a": value}
    return value


# Loading


def test_from_dict_builds_rules_in_order() -> None:
    assert FieldMapping.from_dict(SETTINGS) == EXPECTED


def test_fields_and_ignore_are_optional() -> None:
    assert FieldMapping.from_dict({"source": "crm"}) == FieldMapping(source="crm", rules=())


def test_address_parts_are_mapping_targets() -> None:
    assert _mapping({"zip": "address.postal_code"}).rules == (MapRule("zip", "address.postal_code"),)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"fields": {}}, "source: missing"),
        ({"source": 3}, "source: must be a non-empty string, got 3"),
        ({"source": "  "}, "source: must be a non-empty string"),
        (
            {"source": "crm", "fields": {"attributes.email": "emial"}},
            "fields['attributes.email']: unknown canonical field 'emial'",
        ),
        ({"source": "crm", "fields": {"a": "address.street"}}, "fields['a']: unknown canonical field 'address.street'"),
        ({"source": "crm", "fields": {"a": "attributes."}}, "fields['a']: unknown canonical field"),
        (
            {"source": "crm", "fields": {"a": {"field": "email", "transform": "titlecase"}}},
            "fields['a']: unknown transform 'titlecase'",
        ),
        (
            {"source": "crm", "fields": {"a": {"field": "email", "transform": 3}}},
            "fields['a'].transform: must be a string",
        ),
        (
            {"source": "crm", "fields": {"a": {"field": "email", "colour": "red"}}},
            "fields['a'].'colour': unknown setting",
        ),
        ({"source": "crm", "fields": {"a": {"transform": "strip"}}}, "fields['a'].field: missing"),
        ({"source": "crm", "fields": {"a": 3}}, "fields['a']: must be a canonical field name or a table"),
        ({"source": "crm", "fields": {"a": {"field": ["email"]}}}, "fields['a']: unknown canonical field list"),
        ({"source": "crm", "fields": {"a..b": "email"}}, "fields['a..b']: must be a dotted path"),
        ({"source": "crm", "fields": {"": "email"}}, "fields['']: must be a dotted path"),
        ({"source": "crm", "fields": ["email"]}, "fields: must be a table"),
        ({"source": "crm", "ignore": "links"}, "ignore: must be a list of paths, got 'links'"),
        ({"source": "crm", "ignore": ["links", 3]}, "ignore[1]: must be a dotted path"),
        ({"source": "crm", "external_id": ""}, "external_id: must be a dotted path"),
        ({"source": "crm", "changed_at": "a."}, "changed_at: must be a dotted path"),
        ({"source": "crm", "changed_at": 5}, "changed_at: must be a dotted path"),
        ({"source": "crm", "field": {}}, "'field': unknown setting"),
    ],
)
def test_from_dict_errors_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(MappingError) as raised:
        FieldMapping.from_dict(data)
    assert message in str(raised.value)


def test_from_dict_needs_a_table() -> None:
    with pytest.raises(MappingError, match="table of settings"):
        FieldMapping.from_dict(["source"])  # type: ignore[arg-type]


def test_from_file_reads_toml_and_json(tmp_path: Path) -> None:
    toml_file = tmp_path / "memberful.toml"
    toml_file.write_text(TOML)
    json_file = tmp_path / "memberful.json"
    json_file.write_text(json.dumps(SETTINGS))
    assert FieldMapping.from_file(toml_file) == EXPECTED
    assert FieldMapping.from_file(json_file) == EXPECTED


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.toml", 'source = "crm"\n[fields\n', "cannot read mapping"),
        ("bad.json", '{"source": ', "cannot read mapping"),
        ("bad.json", "[1, 2]", "mapping must be a table of settings"),
        ("bad.json", "[" * 100_000 + "]" * 100_000, "cannot read mapping"),
        ("bytes.toml", b"source = '\xff'", "cannot read mapping"),
        ("wrong.toml", 'source = "crm"\n[fields]\n"a" = "emial"\n', "fields['a']: unknown canonical field 'emial'"),
        ("mapping.yaml", "source: crm", "must be .toml or .json"),
    ],
)
def test_from_file_errors_name_the_file(tmp_path: Path, name: str, content: str | bytes, message: str) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(MappingError) as raised:
        FieldMapping.from_file(path)
    assert str(raised.value).startswith(str(path))
    assert message in str(raised.value)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=r"missing\.toml: cannot read mapping"):
        FieldMapping.from_file(tmp_path / "missing.toml")


def test_rules_built_in_code_are_checked_too() -> None:
    with pytest.raises(MappingError, match="unknown transform"):
        MapRule("a", "email", "unix_seconds")
    with pytest.raises(MappingError, match="source"):
        FieldMapping(source="", rules=())


# Applying


def test_apply_mapping_reads_nested_paths_and_list_indexes() -> None:
    mapped = apply_mapping(EXPECTED, RAW)
    assert mapped.external_id == "1042"
    assert mapped.changed_at == datetime(2026, 4, 1, 9, 30, tzinfo=UTC)
    assert mapped.values == {
        "email": "Ada@Example.com",
        "full_name": "Ada Lovelace",
        "phone": "020 7946 0018",
        "attributes.type": "members",
        "attributes.attributes.plan.name": "gold",
        "attributes.attributes.plan.seats": 3,
        # A rule reading into a list does not consume the list: the other phone stays visible.
        "attributes.profile.phones": ["020 7946 0018", "+1 650 253 0000"],
    }


def test_mapped_record_normalises() -> None:
    record = normalize_record(apply_mapping(EXPECTED, RAW), "memberful", datetime(2026, 5, 1, tzinfo=UTC))
    assert record.rejected == ()
    assert record.value("email") == "ada@example.com"
    assert record.value("family_name") == "Lovelace"
    assert record.values["email"].changed_at == datetime(2026, 4, 1, 9, 30, tzinfo=UTC)


def test_missing_paths_are_skipped() -> None:
    mapping = _mapping({"a.b": "email", "list.5": "phone", "list.x": "given_name", "s.0": "family_name"})
    mapped = apply_mapping(mapping, {"a": {"c": 1}, "list": [1], "s": "text"})
    assert mapped.values == {"attributes.a.c": 1, "attributes.list": [1], "attributes.s": "text"}


def test_ignored_paths_and_everything_under_them_are_dropped() -> None:
    mapping = _mapping(ignore=["links", "meta.debug"])
    raw = {"links": {"self": "x", "next": {"href": "y"}}, "meta": {"debug": [1], "page": 2}, "kept": True}
    assert apply_mapping(mapping, raw).values == {"attributes.meta.page": 2, "attributes.kept": True}


def test_a_rule_on_a_dict_consumes_the_whole_subtree() -> None:
    mapping = _mapping({"home": "address"})
    raw = {"home": {"city": "London", "country": "GB"}}
    assert apply_mapping(mapping, raw).values == {"address": {"city": "London", "country": "GB"}}


def test_empty_dicts_are_leaves_so_nothing_vanishes() -> None:
    assert apply_mapping(_mapping(), {"meta": {}, "x": {"y": {}}}).values == {
        "attributes.meta": {},
        "attributes.x.y": {},
    }


@pytest.mark.parametrize(
    ("transform", "value", "expected"),
    [
        ("strip", "  Ada  ", "Ada"),
        ("lower", "ADA", "ada"),
        ("upper", "gb", "GB"),
        ("bool", "Yes", True),
        ("bool", 0, False),
        ("str", 12345, "12345"),
        ("str", 1.5, "1.5"),
        ("first", ["a", "b"], "a"),
        ("first", [], None),
        ("join_space", ["Ada", None, " King ", "", "Lovelace"], "Ada King Lovelace"),
        ("join_space", [], None),
        # A transform that cannot apply passes the value through, for normalisation to reject with a reason.
        ("strip", 42, 42),
        ("lower", ["A"], ["A"]),
        ("upper", None, None),
        ("bool", "perhaps", "perhaps"),
        ("str", {"a": 1}, {"a": 1}),
        ("str", float("inf"), float("inf")),
        ("first", "abc", "abc"),
        ("join_space", ["a", 1], ["a", 1]),
        ("join_space", "a b", "a b"),
    ],
)
def test_transforms(transform: str, value: Any, expected: Any) -> None:
    mapping = _mapping({"v": {"field": "attributes.v", "transform": transform}})
    assert apply_mapping(mapping, {"v": value}).values == {"attributes.v": expected}


def test_str_transform_leaves_unprintable_ints_alone() -> None:
    huge = 10**5000
    mapping = _mapping({"v": {"field": "phone", "transform": "str"}})
    assert apply_mapping(mapping, {"v": huge}).values["phone"] is huge


def test_first_non_none_value_wins() -> None:
    mapping = _mapping({"work_email": "email", "home_email": "email", "other_email": "email"})
    mapped = apply_mapping(mapping, {"work_email": None, "home_email": "home@example.org", "other_email": "o@x.org"})
    assert mapped.values == {"email": "home@example.org"}
    assert apply_mapping(mapping, {"work_email": None}).values == {"email": None}


def test_address_is_built_from_separate_fields() -> None:
    mapping = _mapping(
        {
            "street": "address.line1",
            "zip": {"field": "address.postal_code", "transform": "str"},
            "cc": "address.country",
        }
    )
    mapped = apply_mapping(mapping, {"street": "1 High St", "zip": 12345, "cc": "us"})
    assert mapped.values == {"address": {"line1": "1 High St", "postal_code": "12345", "country": "us"}}


def test_a_whole_address_wins_over_parts() -> None:
    mapping = _mapping({"home": "address", "zip": "address.postal_code"})
    assert apply_mapping(mapping, {"home": {"city": "Leeds"}, "zip": "LS1"}).values == {"address": {"city": "Leeds"}}
    assert apply_mapping(mapping, {"home": None, "zip": "LS1"}).values == {"address": {"postal_code": "LS1"}}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-04-01T09:30:00Z", datetime(2026, 4, 1, 9, 30, tzinfo=UTC)),
        ("2026-04-01T11:30:00+02:00", datetime(2026, 4, 1, 9, 30, tzinfo=UTC)),
        ("2026-04-01T09:30:00", datetime(2026, 4, 1, 9, 30, tzinfo=UTC)),
        ("2026-04-01", datetime(2026, 4, 1, tzinfo=UTC)),
        (1775035800, datetime(2026, 4, 1, 9, 30, tzinfo=UTC)),
        (1775035800.5, datetime(2026, 4, 1, 9, 30, 0, 500000, tzinfo=UTC)),
    ],
)
def test_changed_at_is_parsed(raw: object, expected: datetime) -> None:
    parsed = parse_changed_at(raw)
    assert parsed == expected
    assert parsed is not None
    assert parsed.tzinfo is UTC
    mapped = apply_mapping(_mapping(changed_at="meta.updated"), {"meta": {"updated": raw}})
    assert mapped.changed_at == expected
    assert mapped.values == {}


@pytest.mark.parametrize(
    "raw",
    [
        "yesterday",
        "",
        "1775035800",
        True,
        None,
        1e300,
        float("nan"),
        10**30,
        ["2026-04-01"],
        pytest.param(BIG, id="1MB"),
    ],
)
def test_unparseable_changed_at_stays_in_attributes(raw: object) -> None:
    mapped = apply_mapping(_mapping(changed_at="meta.updated"), {"meta": {"updated": raw}})
    assert mapped.changed_at is None
    assert mapped.values == {"attributes.meta.updated": raw}


@pytest.mark.parametrize(("raw", "expected"), [(1042, "1042"), ("m-1", "m-1"), (" m-1 ", " m-1 ")])
def test_external_id_is_text(raw: object, expected: str) -> None:
    mapped = apply_mapping(_mapping(external_id="id"), {"id": raw})
    assert mapped.external_id == expected
    assert mapped.values == {}


@pytest.mark.parametrize("raw", [None, True, 1.5, ["a"], pytest.param(10**5000, id="huge-int")])
def test_unusable_external_id_stays_in_attributes(raw: object) -> None:
    mapped = apply_mapping(_mapping(external_id="id"), {"id": raw})
    assert mapped.external_id is None
    assert mapped.values["attributes.id"] == raw


def test_leaves_past_the_cap_are_counted_not_kept() -> None:
    raw = {f"k{index}": index for index in range(MAX_LEAVES + 20)}
    values = apply_mapping(_mapping(), raw).values
    assert len(values) == MAX_LEAVES + 1
    assert values[f"attributes.k{MAX_LEAVES - 1}"] == MAX_LEAVES - 1
    assert f"attributes.k{MAX_LEAVES}" not in values
    assert values[TRUNCATED_FIELD] == 20


def test_cap_counts_only_leaves_nothing_consumed() -> None:
    raw = {"x": {f"k{index}": index for index in range(MAX_LEAVES)}, "email": "a@b.org", "links": [1], "extra": 1}
    values = apply_mapping(_mapping({"email": "email"}, ignore=["links"]), raw).values
    assert values["email"] == "a@b.org"
    assert values[TRUNCATED_FIELD] == 1
    assert "attributes.extra" not in values


def test_under_the_cap_nothing_is_truncated() -> None:
    raw = {f"k{index}": index for index in range(MAX_LEAVES)}
    assert TRUNCATED_FIELD not in apply_mapping(_mapping(), raw).values


def test_deeply_nested_records_do_not_recurse() -> None:
    raw = {"deep": _nested_dict(1000)}
    mapping = _mapping({"deep" + ".a" * 1000 + ".leaf": "attributes.found"})
    values = apply_mapping(mapping, raw).values
    assert values["attributes.found"] == 1
    # Dicts deeper than the flattening depth are one leaf; normalisation rejects it as nested too deep.
    assert list(values) == ["attributes.found", "attributes.deep.a.a.a.a.a.a.a"]
    record = normalize_record(apply_mapping(mapping, raw), "crm", datetime(2026, 5, 1, tzinfo=UTC))
    assert [found.field for found in record.rejected] == ["attributes.deep.a.a.a.a.a.a.a"]


def test_huge_strings_pass_through_for_normalisation_to_reject() -> None:
    mapping = _mapping({"name": {"field": "full_name", "transform": "strip"}}, external_id="id")
    mapped = apply_mapping(mapping, {"name": BIG, "id": BIG, "note": BIG})
    assert mapped.values == {"full_name": BIG, "attributes.note": BIG}
    record = normalize_record(mapped, "crm", datetime(2026, 5, 1, tzinfo=UTC))
    assert {found.field for found in record.rejected} == {"full_name", "attributes.note", "external_id"}


# Properties

KEYS = st.text(st.characters(exclude_characters="."), min_size=1, max_size=6)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=30,
)
RECORDS = st.dictionaries(KEYS, JSON_VALUES, max_size=6)


def _leaf_count(value: Any, depth: int = 1) -> int:
    if isinstance(value, dict) and value and depth < 8:
        return sum(_leaf_count(item, depth + 1) for item in value.values())
    return 1


@settings(max_examples=200, deadline=None)
@given(raw=RECORDS)
def test_every_leaf_is_kept_when_nothing_is_mapped(raw: dict[str, Any]) -> None:
    values = apply_mapping(_mapping(), raw).values
    assert len(values) == sum(_leaf_count(value) for value in raw.values())
    assert all(name.startswith("attributes.") for name in values)


@settings(max_examples=200, deadline=None)
@given(raw=RECORDS, paths=st.lists(st.lists(KEYS | st.just("0"), min_size=1, max_size=3), max_size=4))
def test_mapping_any_record_never_raises(raw: dict[str, Any], paths: list[list[str]]) -> None:
    rules = {".".join(path): f"attributes.rule{index}" for index, path in enumerate(paths)}
    mapped = apply_mapping(_mapping(rules, external_id="id", changed_at="updated"), raw)
    assert all(name.startswith("attributes.") for name in mapped.values)
    normalize_record(mapped, "crm", datetime(2026, 5, 1, tzinfo=UTC))
