"""Phone numbers read and checked as phonenumbers does, with shortcuts for the common cases that give the same
answers for less work (tests hold both ways to every region's example numbers and to arbitrary digits)."""

from __future__ import annotations

import functools
import re

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumber, PhoneNumberDesc
from phonenumbers.phonenumberutil import (
    _MAX_LENGTH_FOR_NSN,
    _MIN_LENGTH_FOR_NSN,
    ValidationResult,
    _maybe_strip_national_prefix_carrier_code,
    _set_italian_leading_zeros_for_phone_number,
    _test_number_length,
)

# Every phone check matches a number against a dozen of the metadata's patterns; by default phonenumbers looks each
# one up in `re`'s own cache, which costs a sixth of the check. The patterns are fixed, so keeping them is bounded.
phonenumbers.enable_pattern_cache()

# "+" and ASCII digits only, as platforms' APIs send numbers (E.164); more than two digits, as the library needs after
# a "+", and no more than a calling code and the longest national number.
_INTERNATIONAL = re.compile(r"\+([1-9][0-9]{2,19})")
_LONGEST_CALLING_CODE = 3
# Lengths after which the library keeps a number's national prefix: stripping it would leave too few digits.
_KEEPS_NATIONAL_PREFIX = frozenset(
    {ValidationResult.TOO_SHORT, ValidationResult.IS_POSSIBLE_LOCAL_ONLY, ValidationResult.INVALID_LENGTH}
)
# The types of number the library tries, in its order, before the mobile pattern.
_NUMBER_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
)


def parse_phone(text: str, default_region: str) -> PhoneNumber:
    """`phonenumbers.parse(text, default_region)`, without its search for formatting, extensions and dialling
    prefixes when `text` is already "+" and digits; raises `phonenumbers.NumberParseException` as it does."""
    international = _INTERNATIONAL.fullmatch(text)
    number = _parse_international(international.group(1)) if international else None
    return number if number is not None else phonenumbers.parse(text, default_region)


def _parse_international(digits: str) -> PhoneNumber | None:
    """The number the digits after a "+" are, as the library reads them; None for what it would reject."""
    country_code, national = _split_calling_code(digits)
    if country_code is None or len(national) < _MIN_LENGTH_FOR_NSN:
        return None
    metadata = _metadata(country_code)
    _, stripped, _ = _maybe_strip_national_prefix_carrier_code(national, metadata)
    if _test_number_length(stripped, metadata) not in _KEEPS_NATIONAL_PREFIX:
        national = stripped
    if not _MIN_LENGTH_FOR_NSN <= len(national) <= _MAX_LENGTH_FOR_NSN:
        return None
    number = PhoneNumber(country_code=country_code, national_number=int(national))
    _set_italian_leading_zeros_for_phone_number(national, number)
    return number


def _split_calling_code(digits: str) -> tuple[int | None, str]:
    """The shortest leading digits that are a calling code, and the digits after them."""
    for length in range(1, _LONGEST_CALLING_CODE + 1):
        if int(digits[:length]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return int(digits[:length]), digits[length:]
    return None, digits


@functools.cache  # one entry per calling code
def _metadata(country_code: int) -> PhoneMetadata:
    region = phonenumbers.region_code_for_country_code(country_code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None:
        raise LookupError(f"phonenumbers has no metadata for calling code {country_code}")
    return metadata


def is_valid_phone(number: PhoneNumber) -> bool:
    """`phonenumbers.is_valid_number`, checked with two patterns of the number's region where that library tries
    each type of number in turn (premium rate, toll free, ..., fixed line, mobile), and once where it checks twice.

    For a calling code several regions share (+44: GB, GG, IM, JE), the library finds the number's region by
    checking it against each region's patterns in turn, then checks it once more against the region found. When
    the first region (the main one) has no leading digits of its own, that first check is the one the library
    would repeat, so a number it passes is valid; any other number is left to the library.
    """
    country_code = number.country_code or 0
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ())
    if len(regions) == 1:
        return _is_valid_for_region(number, country_code, regions[0])
    region = _main_region(country_code)
    if region is not None and _is_valid_for_region(number, country_code, region):
        return True
    return bool(phonenumbers.is_valid_number(number))


def _is_valid_for_region(number: PhoneNumber, country_code: int, region: str) -> bool:
    """`phonenumbers.is_valid_number_for_region` for a region of the number's own calling code."""
    national = phonenumbers.national_significant_number(number)
    patterns = _valid_patterns(country_code, region, len(national))
    return patterns is not None and all(pattern.fullmatch(national) for pattern in patterns)


@functools.cache  # one entry per region and length of national number
def _valid_patterns(country_code: int, region: str, length: int) -> tuple[re.Pattern[str], re.Pattern[str]] | None:
    """What a valid number of `length` digits matches in the region: its general pattern, and the patterns of the
    types of number that length can be, as one alternation; None when no number of that length is valid there."""
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None:
        return None
    kinds = [getattr(metadata, kind) for kind in _NUMBER_TYPES]
    if not metadata.same_mobile_and_fixed_line_pattern:  # else the library never looks at the mobile pattern
        kinds.append(metadata.mobile)
    general = _pattern_for_length(metadata.general_desc, length)
    typed = [pattern for kind in kinds if (pattern := _pattern_for_length(kind, length)) is not None]
    if general is None or not typed:
        return None
    return re.compile(general), re.compile("|".join(f"(?:{pattern})" for pattern in typed))


def _pattern_for_length(description: PhoneNumberDesc | None, length: int) -> str | None:
    """The description's pattern, if a number of `length` digits can match it (no lengths listed: any length)."""
    if description is None or not description.national_number_pattern:
        return None
    if description.possible_length and length not in description.possible_length:
        return None
    return description.national_number_pattern


@functools.cache  # one entry per calling code a parsed number can have
def _main_region(country_code: int) -> str | None:
    """The region `is_valid_phone` checks first: the main one of a shared calling code, if it has no leading
    digits (which the library would test instead of its patterns)."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ())
    if len(regions) < 2:
        return None
    metadata = PhoneMetadata.metadata_for_region(regions[0].upper(), None)
    return regions[0] if metadata is not None and metadata.leading_digits is None else None
