from __future__ import annotations

import random

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from membersync.identity.phones import is_valid_phone, parse_phone

REGIONS = ["GB", "US", "IT", "DE", "FR", "AU", "JP", "BR", "IN", "ZZ"]


def _examples() -> list[phonenumbers.PhoneNumber]:
    """Every region's example number of every type, and every non-geographic calling code's."""
    numbers = [
        example
        for region in sorted(phonenumbers.SUPPORTED_REGIONS)
        for kind in range(12)
        if (example := phonenumbers.example_number_for_type(region, kind)) is not None
    ]
    for country_code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        example = phonenumbers.example_number_for_non_geo_entity(country_code)
        if example is not None:
            numbers.append(example)
    return numbers


def _numbers_near_examples() -> list[phonenumbers.PhoneNumber]:
    """The examples, and each with its last digit changed and one digit more or fewer: valid numbers of regions
    sharing a calling code, and invalid ones that come close."""
    numbers = []
    for example in _examples():
        digits = str(example.national_number)
        for variant in {digits, digits[:-1] + str((int(digits[-1]) + 3) % 10), digits + "5", digits[:-1]}:
            numbers.append(phonenumbers.PhoneNumber(country_code=example.country_code, national_number=int(variant)))
    return numbers


def _numbers_sharing_examples_first_digits() -> list[phonenumbers.PhoneNumber]:
    """For each example, numbers that keep all but its last 1 to 7 digits and end in random ones, as many, one or two
    fewer, or one or two more: about a fifth of them are valid."""
    draw = random.Random(4)
    numbers = []
    for example in _examples():
        national = phonenumbers.national_significant_number(example)
        for replaced in range(1, 8):
            for length in range(replaced - 2, replaced + 3):
                ending = "".join(draw.choice("0123456789") for _ in range(max(0, length)))
                digits = national[: max(1, len(national) - replaced)] + ending
                numbers.append(phonenumbers.PhoneNumber(country_code=example.country_code, national_number=int(digits)))
    return numbers


def _international_texts() -> list[str]:
    """The examples written as "+" and digits, and as people mistype them: with a national prefix ("0") or two
    after the calling code, a digit short, a digit over, and with the calling code's first digits only."""
    texts = []
    for example in _examples():
        code = str(example.country_code)
        national = phonenumbers.national_significant_number(example)
        texts += [f"+{code}{national}", f"+{code}0{national}", f"+{code}00{national}", f"+{code}{national[:-1]}"]
        texts += [f"+{code}{national}9", f"+{code[:-1]}{national}", f"+{code}{national[:2]}"]
    return texts


def _outcome(parse: object, text: str, region: str) -> phonenumbers.PhoneNumber | int:
    """The number the parser reads, or the kind of error it raises."""
    try:
        return parse(text, region)  # type: ignore[operator, no-any-return]
    except phonenumbers.NumberParseException as error:
        return error.error_type


def test_phone_validity_is_the_librarys_for_numbers_of_every_region() -> None:
    numbers = _numbers_near_examples()

    assert len(numbers) > 5000
    assert [is_valid_phone(number) for number in numbers] == [phonenumbers.is_valid_number(n) for n in numbers]
    assert any(is_valid_phone(n) and phonenumbers.region_code_for_number(n) == "GG" for n in numbers)


def test_phone_validity_is_the_librarys_for_numbers_like_every_regions() -> None:
    numbers = _numbers_sharing_examples_first_digits()
    valid = [phonenumbers.is_valid_number(number) for number in numbers]

    assert [is_valid_phone(number) for number in numbers] == valid
    assert len(numbers) / 10 < sum(valid) < len(numbers) / 2


@settings(max_examples=300, deadline=None)
@given(
    country_code=st.sampled_from([1, 7, 33, 39, 44, 49, 61, 262, 590, 599, 800, 979]),
    national=st.integers(10**5, 10**11),
)
def test_phone_validity_is_the_librarys_for_any_digits(country_code: int, national: int) -> None:
    number = phonenumbers.PhoneNumber(country_code=country_code, national_number=national)

    assert is_valid_phone(number) == phonenumbers.is_valid_number(number)


def test_international_numbers_of_every_region_read_as_the_library_reads_them() -> None:
    texts = _international_texts()

    assert len(texts) > 9_000
    for region in ("GB", "IT"):
        ours = [_outcome(parse_phone, text, region) for text in texts]
        assert ours == [_outcome(phonenumbers.parse, text, region) for text in texts]
    read = [number for number in ours if isinstance(number, phonenumbers.PhoneNumber)]
    assert any(number.italian_leading_zero for number in read)
    assert any((number.number_of_leading_zeros or 1) > 1 for number in read)


def test_international_numbers_take_the_shortcut(monkeypatch: pytest.MonkeyPatch) -> None:
    examples = _examples()
    expected = [phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164) for n in examples]

    def library_parse(text: str, region: str) -> None:
        raise AssertionError(f"{text} was left to the library")

    monkeypatch.setattr(phonenumbers, "parse", library_parse)
    read = [parse_phone(text, "GB") for text in expected]
    assert [phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164) for n in read] == expected


@settings(max_examples=2000, deadline=None)
@given(text=st.from_regex(r"\+[0-9]{0,22}", fullmatch=True), region=st.sampled_from(REGIONS))
def test_any_plus_and_digits_read_as_the_library_reads_them(text: str, region: str) -> None:
    assert _outcome(parse_phone, text, region) == _outcome(phonenumbers.parse, text, region)


@given(text=st.text(alphabet="+0123456789 ()-.x#;ext=", max_size=30), region=st.sampled_from(REGIONS))
def test_other_texts_are_left_to_the_library(text: str, region: str) -> None:
    assert _outcome(parse_phone, text, region) == _outcome(phonenumbers.parse, text, region)
