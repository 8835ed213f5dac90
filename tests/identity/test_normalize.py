from __future__ import annotations

import contextlib
import zoneinfo
from datetime import UTC, datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any

import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from membersync.identity.normalize import (
    FieldRejected,
    NormaliseOptions,
    normalize_address,
    normalize_attribute,
    normalize_bool,
    normalize_email,
    normalize_phone,
    normalize_record,
    normalize_status,
    normalize_text,
    normalize_time_zone,
    split_full_name,
)
from membersync.identity.schemas import (
    ADDRESS_PARTS,
    CANONICAL_FIELDS,
    MappedRecord,
    NormalisedRecord,
    is_canonical_field,
)

OPTIONS = NormaliseOptions()
RECEIVED = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
BIG = "x" * 1_000_000
HUGE_INT = 10**5000
NAME_FIELDS = ("given_name", "family_name", "full_name")


def _nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def _normalise(values: dict[str, Any], **record: Any) -> NormalisedRecord:
    return normalize_record(MappedRecord(values=values, **record), "crm", RECEIVED)


# Emails


def test_email_is_lower_cased_entirely_and_trimmed() -> None:
    assert normalize_email("  Ada.Lovelace@Example.COM ") == "ada.lovelace@example.com"


@pytest.mark.parametrize("email", ["иван@пример.рф", "ユーザー@例え.jp", "用户@例子.广告", "ivan@пример.рф"])
def test_email_in_one_script_per_part_is_accepted(email: str) -> None:
    assert normalize_email(email) == email


@pytest.mark.parametrize(
    "email",
    [
        "ada@p\u0430ypal.com",  # a Cyrillic U+0430 among Latin letters in one label
        "ada@xn--pypal-4ve.com",  # the same domain in punycode
        "\u0430da@example.com",
        "ada@\u03b1pple.com",  # Greek alpha
    ],
)
def test_email_mixing_scripts_is_rejected(email: str) -> None:
    with pytest.raises(FieldRejected, match="scripts"):
        normalize_email(email)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "must be text"),
        (42, "must be text"),
        ("   ", "must not be empty"),
        ("a@b.com\x00", "control characters"),
        ("a\nb@example.com", "control characters"),
        (f"{'a' * 320}@example.com", "longer than 320 characters"),
        pytest.param(BIG, "longer than 320 characters", id="1MB"),
        ("not-an-email", "not a valid email address"),
        ("ada@localhost", "not a valid email address"),
        ("ada@example.test", "not a valid email address"),
        ("Ada <ada@example.com>", "not a valid email address"),
        ("\ud800@example.com", "valid Unicode"),
    ],
)
def test_email_rejections(raw: object, reason: str) -> None:
    with pytest.raises(FieldRejected, match=reason):
        normalize_email(raw)


def _library_says(text: str) -> str | None:
    """email-validator's whole-address verdict, lower-cased as `normalize_email` returns it."""
    try:
        return validate_email(text, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def _normalised_or_none(text: str) -> str | None:
    try:
        return normalize_email(text)
    except FieldRejected:
        return None


_LOCAL_CHARS = "abcz09._+-!#$%&'*/=?^`{|}~\"@ ()<>,;:[]é"
_DOMAIN_LABELS = ["example", "org", "com", "localhost", "test", "invalid", "local", "onion", "arpa", "xn--bcher-kva"]
_DOMAIN_LABELS += ["a", "1", "123", "-a", "a-", "a--b", "x" * 63, "x" * 64, "", "ü", "exa_mple"]


@settings(max_examples=1000, deadline=None)
@given(
    local=st.text(alphabet=_LOCAL_CHARS, max_size=70),
    labels=st.lists(st.sampled_from(_DOMAIN_LABELS), min_size=1, max_size=5),
    padding=st.sampled_from([0, 180, 200, 260]),
)
def test_emails_checked_by_domain_get_the_library_verdict(local: str, labels: list[str], padding: int) -> None:
    # Plain addresses are checked by their domain once; every address must still get email-validator's answer.
    local = "m" * padding + local
    text = f"{local}@{'.'.join(labels)}"
    assert _normalised_or_none(text) == _library_says(text.strip())  # surrounding spaces are trimmed first


@pytest.mark.parametrize(
    "text",
    [
        "ada.lovelace@example.org",
        "a.b.c@mail.example.org",
        ".ada@example.org",
        "ada.@example.org",
        "ada..king@example.org",
        "ada@example..org",
        "ada@-example.org",
        "ada@example.org.",
        "ada@123.123.123.123",
        "ada@example.123",
        "ada@localhost.localdomain",
        f"{'a' * 64}@example.org",
        f"{'a' * 65}@example.org",
        f"{'a' * 240}@example.org",
        f"{'a' * 242}@example.org",
        "postmaster@example.org",
        "ada@xn--bcher-kva.example",
        "ada@xn--zz.example",
    ],
)
def test_plain_looking_emails_get_the_library_verdict(text: str) -> None:
    assert _normalised_or_none(text) == _library_says(text)


# Phones


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("020 7946 0018", "GB", "+442079460018"),
        ("+1 (650) 253-0000", "GB", "+16502530000"),
        ("650-253-0000", "US", "+16502530000"),
        (2079460018, "GB", "+442079460018"),
        ("+442079460018", "US", "+442079460018"),
    ],
)
def test_phone_is_e164(raw: object, region: str, expected: str) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (True, "must be text or a number"),
        (2.5, "must be text or a number"),
        (None, "must be text or a number"),
        ("call me", "not a phone number"),
        ("+44 20 7946", "not a valid phone number"),
        ("1" * 65, "longer than 64 characters"),
        pytest.param(BIG, "longer than 64 characters", id="1MB"),
        pytest.param(HUGE_INT, "not a phone number", id="huge-int"),
        (-5, "not a phone number"),
    ],
)
def test_phone_rejections(raw: object, reason: str) -> None:
    with pytest.raises(FieldRejected, match=reason):
        normalize_phone(raw, "GB")


def test_phone_without_country_code_and_unknown_region_is_rejected_not_raised() -> None:
    with pytest.raises(FieldRejected):
        normalize_phone("020 7946 0018", "XX")


# Time zones


@pytest.mark.parametrize("raw", ["europe/london", "EUROPE/LONDON", " Europe/London "])
def test_time_zone_gets_its_canonical_spelling(raw: str) -> None:
    assert normalize_time_zone(raw) == "Europe/London"


@pytest.mark.parametrize("raw", ["Mars/Olympus_Mons", "localtime", "", "+01:00", 1, None, pytest.param(BIG, id="1MB")])
def test_time_zone_rejections(raw: object) -> None:
    with pytest.raises(FieldRejected):
        normalize_time_zone(raw)


# Text, status, bool


def test_text_drops_controls_and_collapses_whitespace() -> None:
    assert normalize_text("  Ada\x00\x07  King\n\tLovelace\u00a0 ", 255) == "Ada King Lovelace"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (42, "must be text"),
        (1.5, "must be text"),
        (["Ada"], "must be text"),
        (None, "must be text"),
        ("\x00\x01 \n", "must not be empty"),
        ("abcdef", "longer than 5 characters"),
        ("ab\udc00", "valid Unicode"),
    ],
)
def test_text_rejections(raw: object, reason: str) -> None:
    with pytest.raises(FieldRejected, match=reason):
        normalize_text(raw, 5)


def test_text_is_never_truncated() -> None:
    with pytest.raises(FieldRejected, match="longer than 255 characters"):
        normalize_text(BIG, 255)


def test_status_is_a_lower_case_key() -> None:
    assert normalize_status("  Past-Due  Member ", 32) == "past_due_member"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        ("TRUE", True),
        (" no ", False),
        ("Y", True),
        ("n", False),
        ("1", True),
        ("0", False),
        ("Yes", True),
    ],
)
def test_bool_accepts_the_usual_spellings(raw: object, expected: bool) -> None:
    assert normalize_bool(raw) is expected


@pytest.mark.parametrize("raw", [2, -1, 1.0, "maybe", "", None, [True], "t"])
def test_bool_rejects_everything_else(raw: object) -> None:
    with pytest.raises(FieldRejected, match="must be true or false"):
        normalize_bool(raw)


# Addresses


def test_address_parts_are_cleaned_and_blank_parts_left_out() -> None:
    raw = {"line1": " 12  Baker\nStreet ", "line2": "", "city": "London", "region": None, "country": "gb"}
    assert normalize_address(raw, OPTIONS) == {"line1": "12 Baker Street", "city": "London", "country": "GB"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("12 Baker Street", "must be an address"),
        ({"street": "Baker Street"}, "unknown address part 'street'"),
        ({"city": "London", 3: "x"}, "unknown address part 3"),
        ({"country": "GBR"}, "country: must be a two-letter country code"),
        ({"country": "\u00df"}, "country: must be a two-letter country code"),
        ({"country": "g1"}, "country: must be a two-letter country code"),
        ({}, "at least one address part"),
        ({"line2": "  ", "city": None}, "at least one address part"),
        ({"postal_code": 12345}, "postal_code: must be text"),
        ({"city": "x" * 256}, "city: longer than 255 characters"),
    ],
)
def test_address_rejections(raw: object, reason: str) -> None:
    with pytest.raises(FieldRejected, match=reason):
        normalize_address(raw, OPTIONS)


# Attributes


def test_attribute_is_a_json_copy() -> None:
    raw = {"plan": ["gold", {"since": 2019, "ratio": 0.5, "note": "a\tb\nc", "gift": None, "on": True}]}
    normalised = normalize_attribute(raw, OPTIONS)
    assert normalised == raw
    assert normalised is not raw


@pytest.mark.parametrize("raw", ["gold", "", 7, -(2**63), 0.5, True, False])
def test_scalar_attribute_is_itself(raw: object) -> None:
    normalised = normalize_attribute(raw, OPTIONS)
    assert normalised == raw
    assert type(normalised) is type(raw)


@pytest.mark.parametrize(
    ("raw", "json_bytes"),
    [("x" * 100, 102), ("\n" * 50, 102), ('"' * 50, 102), ("\u00e9" * 50, 102), (10**99, 100), (-0.125, 6)],
)
def test_a_scalar_attribute_is_measured_as_json(raw: object, json_bytes: int) -> None:
    assert normalize_attribute(raw, NormaliseOptions(max_attribute_bytes=json_bytes)) == raw
    with pytest.raises(FieldRejected, match=f"larger than {json_bytes - 1} bytes"):
        normalize_attribute(raw, NormaliseOptions(max_attribute_bytes=json_bytes - 1))


def test_attribute_of_an_int_subclass_is_a_plain_int() -> None:
    normalised = normalize_attribute(HTTPStatus.OK, OPTIONS)
    assert normalised == 200
    assert type(normalised) is int


def test_attribute_may_nest_eight_levels() -> None:
    assert normalize_attribute(_nested(8), OPTIONS) == _nested(8)
    with pytest.raises(FieldRejected, match="nested deeper than 8 levels"):
        normalize_attribute(_nested(9), OPTIONS)


def test_attribute_nested_a_thousand_levels_is_rejected_without_recursion() -> None:
    with pytest.raises(FieldRejected, match="nested deeper"):
        normalize_attribute(_nested(1000), OPTIONS)


def test_attribute_that_contains_itself_is_rejected() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(FieldRejected):
        normalize_attribute(loop, OPTIONS)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (float("nan"), "NaN or infinite"),
        ([1, float("inf")], "NaN or infinite"),
        ("bell\x07", "control characters"),
        ({"key\x00": 1}, "control characters"),
        ("\ud800", "control characters"),
        ({1: "a"}, "object keys must be text"),
        ((1, 2), "must be a JSON value"),
        ({"a": {1, 2}}, "must be a JSON value"),
        (b"bytes", "must be a JSON value"),
        (object(), "must be a JSON value"),
        pytest.param(BIG, "larger than 16384 bytes", id="1MB"),
        (["a"] * 20_000, "larger than 16384 bytes"),
        ("\u00e9" * 9000, "larger than 16384 bytes"),
        pytest.param(HUGE_INT, "larger than 16384 bytes", id="huge-int"),
    ],
)
def test_attribute_rejections(raw: object, reason: str) -> None:
    with pytest.raises(FieldRejected, match=reason):
        normalize_attribute(raw, OPTIONS)


# Names


@pytest.mark.parametrize(
    ("full", "expected"),
    [
        ("Ada King Lovelace", ("Ada King", "Lovelace")),
        ("Ada Lovelace", ("Ada", "Lovelace")),
        ("Plato", (None, "Plato")),
        ("  Ada   Lovelace ", ("Ada", "Lovelace")),
    ],
)
def test_split_full_name_takes_the_last_word_as_family_name(full: str, expected: tuple[str | None, str]) -> None:
    assert split_full_name(full) == expected


def test_split_full_name_rejects_blank() -> None:
    with pytest.raises(FieldRejected):
        split_full_name("   ")


# Whole records


def test_record_normalises_each_field_by_its_kind() -> None:
    record = _normalise(
        {
            "email": "Ada@Example.com",
            "phone": "020 7946 0018",
            "time_zone": "europe/london",
            "membership_status": "Past Due",
            "membership_tier": " Gold ",
            "address": {"city": "London", "country": "gb"},
            "consent_sms": "no",
            "attributes.plan": {"seats": 3},
        },
        external_id=" 42 ",
    )
    assert record.rejected == ()
    assert record.external_id == "42"
    assert {name: found.value for name, found in record.values.items()} == {
        "email": "ada@example.com",
        "phone": "+442079460018",
        "time_zone": "Europe/London",
        "membership_status": "past_due",
        "membership_tier": "Gold",
        "address": {"city": "London", "country": "GB"},
        "consent_sms": False,
        "attributes.plan": {"seats": 3},
    }
    assert all(found.source == "crm" for found in record.values.values())


def test_bad_values_become_rejections_and_the_rest_goes_on() -> None:
    record = _normalise({"email": "nope", "phone": "020 7946 0018", "consent_email": "perhaps", "address": "x" * 500})
    assert record.value("phone") == "+442079460018"
    assert [(found.field, found.reason) for found in record.rejected] == [
        ("email", "not a valid email address: An email address must have an @-sign."),
        ("consent_email", "must be true or false"),
        ("address", "must be an address with parts line1, line2, city, region, postal_code, country"),
    ]
    assert record.rejected[0].value_preview == "'nope'"
    assert len(record.rejected[2].value_preview) == 80


def test_unknown_fields_are_rejected_not_raised() -> None:
    record = normalize_record(MappedRecord(values={"shoe_size": 42, 7: "x", "attributes.": 1}), "crm", RECEIVED)  # type: ignore[dict-item]
    assert [(found.field, found.reason) for found in record.rejected] == [
        ("shoe_size", "unknown field"),
        ("7", "unknown field"),
        ("attributes.", "unknown field"),
    ]
    assert record.values == {}


def test_none_means_no_value() -> None:
    record = _normalise({"email": None, "phone": None, "attributes.x": None})
    assert record.values == {}
    assert record.rejected == ()


def test_value_times_come_from_the_field_then_the_record_then_receipt() -> None:
    field_time = datetime(2026, 4, 1, tzinfo=UTC)
    record_time = datetime(2026, 4, 2, tzinfo=UTC)
    values = {"email": "ada@example.com", "membership_tier": "Gold"}
    with_times = _normalise(values, changed_at=record_time, field_changed_at={"email": field_time})
    assert with_times.values["email"].changed_at == field_time
    assert with_times.values["membership_tier"].changed_at == record_time
    assert with_times.changed_at == record_time
    without = _normalise(values)
    assert without.values["email"].changed_at == RECEIVED
    assert without.changed_at == RECEIVED


def test_naive_times_are_read_as_utc_and_all_times_returned_in_utc() -> None:
    plus_two = datetime(2026, 4, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    record = _normalise(
        {"email": "ada@example.com", "membership_tier": "Gold"},
        changed_at=datetime(2026, 4, 2, 9, 0),
        field_changed_at={"email": plus_two},
    )
    assert record.changed_at == datetime(2026, 4, 2, 9, 0, tzinfo=UTC)
    assert record.values["membership_tier"].changed_at.tzinfo is UTC
    assert record.values["email"].changed_at == datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
    assert record.values["email"].changed_at.tzinfo is UTC
    assert normalize_record(MappedRecord(values={}), "crm", datetime(2026, 1, 1)).changed_at.tzinfo is UTC


def test_given_and_family_names_are_derived_from_the_full_name() -> None:
    named_at = datetime(2026, 3, 1, tzinfo=UTC)
    record = _normalise({"full_name": "Ada King Lovelace"}, field_changed_at={"full_name": named_at})
    assert record.value("given_name") == "Ada King"
    assert record.value("family_name") == "Lovelace"
    assert record.values["given_name"].changed_at == named_at
    assert record.values["family_name"].source == "crm"


def test_only_missing_name_parts_are_derived() -> None:
    record = _normalise({"full_name": "Plato", "given_name": "\x00"})
    assert record.value("family_name") == "Plato"
    assert "given_name" not in record.values
    assert [found.field for found in record.rejected] == ["given_name"]
    kept = _normalise({"full_name": "Ada Lovelace", "family_name": "Byron"})
    assert (kept.value("given_name"), kept.value("family_name")) == ("Ada", "Byron")


def test_full_name_is_derived_from_given_and_family_names() -> None:
    later = datetime(2026, 4, 3, tzinfo=UTC)
    record = _normalise(
        {"given_name": "Ada", "family_name": "Lovelace"},
        changed_at=datetime(2026, 4, 1, tzinfo=UTC),
        field_changed_at={"family_name": later},
    )
    assert record.value("full_name") == "Ada Lovelace"
    assert record.values["full_name"].changed_at == later


def test_full_name_too_long_to_derive_is_left_out() -> None:
    record = _normalise({"given_name": "a" * 200, "family_name": "b" * 200})
    assert "full_name" not in record.values
    assert record.rejected == ()


@pytest.mark.parametrize(
    ("raw", "reason"), [(42, "must be text"), ("\x00", "must not be empty"), pytest.param(BIG, "longer", id="1MB")]
)
def test_bad_external_id_is_a_rejection(raw: object, reason: str) -> None:
    record = _normalise({"email": "ada@example.com"}, external_id=raw)
    assert record.external_id is None
    assert [found.field for found in record.rejected] == ["external_id"]
    assert reason in record.rejected[0].reason
    assert record.value("email") == "ada@example.com"


def test_previews_never_fail() -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    record = _normalise({"email": Hostile(), "phone": HUGE_INT, "membership_tier": _nested(1000)})
    previews = [found.value_preview for found in record.rejected]
    assert previews[0].startswith("<Hostile")
    assert previews[1:] == ["<int>", "[[[[...]]]]"]


# Properties

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
HOSTILE = (
    JSON_VALUES
    | st.text()
    | st.sampled_from([BIG, " " * 100_000, _nested(1000), HUGE_INT, float("nan"), b"bytes", (1, 2), {1, 2}])
    | st.builds(object)
    | st.lists(st.text(max_size=5), max_size=3)
)
TIME_ZONES = sorted(zoneinfo.available_timezones())
PHONES = [
    phonenumbers.format_number(phonenumbers.example_number(region), number_format)  # type: ignore[arg-type]
    for region in ("GB", "US", "DE", "JP", "IN")
    for number_format in (phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
]
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "email": st.emails() | st.sampled_from(["Ада@Пример.рф", "ÉLODIE@exemple.fr", "İSTANBUL@example.com"]),
    "phone": st.sampled_from(PHONES) | st.text(alphabet="+0123456789 -()", max_size=16),
    "time_zone": st.sampled_from(TIME_ZONES).flatmap(lambda name: st.sampled_from([name, name.lower(), name.upper()])),
    "given_name": st.text(max_size=40),
    "family_name": st.text(max_size=40),
    "full_name": st.text(max_size=80),
    "membership_status": st.text(max_size=40),
    "membership_tier": st.text(max_size=40),
    "address": st.dictionaries(st.sampled_from(ADDRESS_PARTS), st.text(max_size=20) | st.none(), max_size=6),
    "consent_email": st.sampled_from([True, False, "yes", "N", 1, 0, "0"]),
    "attributes.plan": JSON_VALUES,
    "attributes.nested.note": st.text(),
}
RECORD_VALUES = st.fixed_dictionaries({}, optional=PLAUSIBLE)
ANY_KEYS = st.sampled_from([*CANONICAL_FIELDS, "attributes.x", "attributes.", "shoe_size"]) | st.text(max_size=12)
ANY_TIME = st.datetimes(timezones=st.none() | st.timezones())


@settings(max_examples=200, deadline=None)
@given(values=RECORD_VALUES, external_id=st.none() | st.text(max_size=20), changed_at=st.none() | ANY_TIME)
def test_normalising_twice_changes_nothing(
    values: dict[str, Any], external_id: str | None, changed_at: datetime | None
) -> None:
    first = normalize_record(MappedRecord(values, external_id, changed_at), "crm", RECEIVED)
    again = MappedRecord(
        values={name: found.value for name, found in first.values.items()},
        external_id=first.external_id,
        changed_at=first.changed_at,
        field_changed_at={name: found.changed_at for name, found in first.values.items()},
    )
    second = normalize_record(again, "crm", RECEIVED)
    assert second.values == first.values
    assert second.external_id == first.external_id
    assert second.changed_at == first.changed_at
    assert second.rejected == ()


@settings(max_examples=200, deadline=None)
@given(
    values=st.dictionaries(ANY_KEYS, HOSTILE | st.none(), max_size=8),
    external_id=st.none() | st.text(max_size=20) | st.integers(),
    received_at=ANY_TIME,
)
def test_no_input_raises_and_nothing_is_lost(values: dict[str, Any], external_id: Any, received_at: datetime) -> None:
    assume("external_id" not in values)  # its rejection would be counted twice, as a field and as the id
    record = normalize_record(MappedRecord(values, external_id), "crm", received_at)
    rejected = [found.field for found in record.rejected]
    assert set(record.values) <= set(values) | set(NAME_FIELDS)
    assert set(rejected) <= set(values) | {"external_id"}
    for name, raw in values.items():
        kept, refused = name in record.values, rejected.count(name)
        if raw is None and isinstance(name, str) and is_canonical_field(name):
            assert refused == 0
        elif name in NAME_FIELDS:
            assert kept or refused == 1
        else:
            assert kept + refused == 1, name
    assert all(found.changed_at.tzinfo is UTC for found in record.values.values())


@settings(max_examples=200, deadline=None)
@given(
    local=st.text(st.characters(categories=["Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Nd"]), min_size=1, max_size=12),
    domain=st.text(st.characters(categories=["Lu", "Ll", "Lo"]), min_size=1, max_size=12),
)
def test_unicode_emails_normalise_to_a_fixed_point(local: str, domain: str) -> None:
    try:
        once = normalize_email(f"{local}@{domain}.com")
    except FieldRejected:
        return
    assert normalize_email(once) == once


@settings(max_examples=200, deadline=None)
@given(raw=HOSTILE | st.text(alphabet=st.characters(codec="utf-8"), max_size=30))
def test_field_functions_raise_only_field_rejected(raw: Any) -> None:
    for normalise in (
        normalize_email,
        normalize_time_zone,
        normalize_bool,
        lambda value: normalize_phone(value, "GB"),
        lambda value: normalize_text(value, 255),
        lambda value: normalize_status(value, 255),
        lambda value: normalize_address(value, OPTIONS),
        lambda value: normalize_attribute(value, OPTIONS),
    ):
        with contextlib.suppress(FieldRejected):
            normalise(raw)
