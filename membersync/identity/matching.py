"""Identity matching: which existing member an incoming record is, and duplicate members within a tenant.

Name similarity is rapidfuzz's Indel ratio (`fuzz.ratio`) over folded names (NFKD with accents stripped, a few
letters NFKD keeps whole such as "ø" and "ł" spelled out, case-folded, apostrophes dropped, other punctuation read
as a space), the better of the tokens sorted (the token sort ratio, so "Lovelace Ada" equals "Ada Lovelace") and
the tokens in the order given (so a typo in a first letter that reorders the sorted tokens still scores high).
Jaro-Winkler was not chosen: its prefix bonus rates "smith john" against "smith jane" at 0.92, so relatives
sharing a phone would be merged automatically. Scripts are not transliterated: "Ivan" and "Иван" do not match.

Blocking keys (see `blocking_keys`) put likely-same people together:

- `n:` + the first 3 letters of the family name + the given name's initial, and `n:` + the first 3 letters of
  the given name + the family name's initial, because people enter their names both ways round; a single name
  gives `n:` + its first 3 letters;
- `e:` + the email's local part without dots and without a `+tag`;
- `p:` + the phone;
- `z:` + the postal code + `:` + the initial of each name part, so a typo in a name's first letters still
  meets its twin when the address agrees (the postal code is a second signal of its own).

`find_duplicates` compares members only within a block, and only pairs whose names can reach the review
threshold, a filter run in C by `rapidfuzz.process.extract` with a `score_cutoff` (members with equal emails
share an extra block whose pairs all go to scoring, as they score 1.0 whatever their names). A block of more than
`max_block_size` members (thousands of "Smith J") is sorted by name and each member is compared only with the
`max_block_size` members either side of it (a sorted neighbourhood), so the work is bounded by members x keys x
`max_block_size`; pairs in such a block that also share a phone, postal code or email are still compared in those
smaller blocks. Members are visited in member id order and each one's pairs are deduplicated before scoring, so
memory stays bounded by the blocks, not by the number of pairs.
"""

from __future__ import annotations

import functools
import unicodedata
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from rapidfuzz import fuzz, process

from membersync.identity.schemas import NormalisedRecord

EMAIL_LOCAL_SIMILARITY = 0.9
_CAP_MARGIN = 0.01
_APOSTROPHES = frozenset("'`\u2019\u02bc")
_SPELLED_OUT = str.maketrans({"ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "æ": "ae", "œ": "oe", "\u0131": "i"})
_LISTED_IDS = 5
_SCORE_SLACK = 1e-6  # rapidfuzz scores in percent: keep a candidate that float rounding puts a hair below


class Candidate(NamedTuple):
    """An existing member as matching sees it (already normalised values).

    A tuple, not a dataclass: a page builds thousands and looks each one's profile up by value.
    """

    member_id: int
    email: str | None
    phone: str | None
    given_name: str | None
    family_name: str | None
    full_name: str | None
    postal_code: str | None = None


class CandidatePool:
    """Candidates, once each, in member id order, with the profiles and names fuzzy matching compares.

    Building one costs a profile per candidate; a page builds one per name block and reuses it for every
    record that falls in that block.
    """

    __slots__ = ("_by_email", "member_ids", "ordered_names", "profiles", "sorted_names")

    def __init__(self, candidates: Iterable[Candidate]) -> None:
        by_id = {candidate.member_id: candidate for candidate in candidates}
        self.member_ids = sorted(by_id)
        self.profiles = [_candidate_profile(by_id[member_id]) for member_id in self.member_ids]
        self.sorted_names = [profile.sorted_name for profile in self.profiles]
        self.ordered_names = [profile.ordered_name for profile in self.profiles]
        self._by_email: dict[str, list[int]] = {}
        for index, profile in enumerate(self.profiles):
            if profile.email is not None:
                self._by_email.setdefault(profile.email, []).append(index)

    def similar(self, profile: Profile, cutoff: float) -> tuple[set[int], tuple[float, int] | None]:
        """Indices of the candidates whose name, in either word order, reaches `cutoff` (percent), and the score
        and index of the most similar name in either order (the lower index on a tie; None for no candidates).

        The most similar name is found first: when it falls short of `cutoff`, as it does for most new people,
        no other name can reach it and one pass in C per word order is all the pool costs."""
        hits: set[int] = set()
        best: tuple[float, int] | None = None
        for query, names in ((profile.sorted_name, self.sorted_names), (profile.ordered_name, self.ordered_names)):
            if not names:
                continue
            _, score, index = process.extractOne(query, names, scorer=fuzz.ratio)
            if best is None or score > best[0] or (score == best[0] and index < best[1]):
                best = (score, index)
            if score >= cutoff:
                found = process.extract(query, names, scorer=fuzz.ratio, limit=None, score_cutoff=cutoff)
                hits.update(index for _, _, index in found)
        return hits, best

    def with_email(self, email: str) -> dict[int, Profile]:
        return {self.member_ids[index]: self.profiles[index] for index in self._by_email.get(email, ())}


@dataclass(frozen=True)
class Thresholds:
    """Score bands: `auto_merge` and above is the same member; from `review` up it is a possible duplicate."""

    auto_merge: float = 0.92
    review: float = 0.75

    def __post_init__(self) -> None:
        if not 0.0 <= self.review <= self.auto_merge <= 1.0:
            raise ValueError(f"thresholds need 0 <= review <= auto_merge <= 1, got {self.review}, {self.auto_merge}")


class MatchKind(StrEnum):
    LINKED = "linked"
    EMAIL = "email"
    PHONE = "phone"
    FUZZY = "fuzzy"
    REVIEW = "review"
    NEW = "new"


@dataclass(frozen=True)
class MatchDecision:
    """Which member a record is (or may be), how sure, and why; `reasons` is never empty."""

    kind: MatchKind
    member_id: int | None
    score: float
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class DuplicatePair:
    """Two members of one tenant that may be one person; `first_id` is the lower member id."""

    first_id: int
    second_id: int
    score: float
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Profile:
    """A person's values as matching compares them (`record_profile`)."""

    sorted_name: str
    ordered_name: str
    email: str | None
    email_local: str
    email_domain: str
    phone: str | None
    postal: str | None


@dataclass(slots=True)
class _Block:
    order: list[int]
    sorted_names: list[str]
    ordered_names: list[str]
    position: dict[int, int] | None
    is_email: bool


def decide(
    record: NormalisedRecord,
    *,
    linked: int | None,
    by_email: Candidate | None,
    by_phone: Sequence[Candidate],
    by_name: Sequence[Candidate] = (),
    name_pools: Sequence[CandidatePool] = (),
    thresholds: Thresholds = Thresholds(),
    profile: Profile | None = None,
) -> MatchDecision:
    """Decide which existing member `record` is.

    In order: a tracker link for the record's (source, external id) (`linked`); a member with the same email
    (`by_email`); the one member with the record's phone (`by_phone`), unless several members share it or both
    sides have given names that clearly differ (a household); otherwise the best fuzzy name match among `by_name`
    and `by_phone`, which needs a second signal (same phone, same postal code, or a similar email local part at
    another domain) to reach `thresholds.auto_merge` and is at most a REVIEW without one. Ties go to the lowest
    member id. `name_pools` are more name candidates, already pooled (a page pools each name block once for all
    its records); a member may be in several pools and in `by_name`. `profile` is the record's
    `record_profile`, when the caller has made it already.
    """
    if linked is not None:
        return MatchDecision(MatchKind.LINKED, linked, 1.0, (_link_reason(record),))
    if profile is None:
        profile = record_profile(record)
    if profile.email is not None and by_email is not None and _email(by_email.email) == profile.email:
        return MatchDecision(MatchKind.EMAIL, by_email.member_id, 1.0, ("email matches",))
    if not (profile.email or profile.phone or profile.sorted_name):
        return MatchDecision(MatchKind.NEW, None, 0.0, ("nothing to match on",))
    given = _first_given(record.value("given_name"), record.value("full_name"))
    decision, notes = _phone_decision(profile, given, by_phone, thresholds)
    if decision is not None:
        return decision
    pools = [*name_pools, CandidatePool([*by_phone, *by_name])] if by_phone or by_name else name_pools
    return _fuzzy_decision(profile, pools, thresholds, notes)


def score_pair(
    first: Candidate, second: Candidate, *, thresholds: Thresholds = Thresholds()
) -> tuple[float, tuple[str, ...]]:
    """Score how likely two members are one person, in [0, 1], with the reasons; symmetric.

    Equal emails score 1.0. Otherwise the score is the name similarity when a second signal backs it (same
    phone, same postal code, or a similar email local part at another domain), and is capped just below
    `thresholds.auto_merge` when none does.
    """
    return _score(_candidate_profile(first), _candidate_profile(second), thresholds)


def blocking_keys(
    given_name: str | None,
    family_name: str | None,
    full_name: str | None,
    email: str | None,
    phone: str | None,
    *,
    postal_code: str | None = None,
) -> set[str]:
    """The blocking keys of one person (`n:`, `e:`, `p:` and `z:` keys, see the module docstring).

    Two people who may be one share at least one key; an empty set means nothing usable.
    """
    postal = _postal(postal_code)
    keys: set[str] = set()
    for given, family in _name_variants(given_name, family_name, full_name):
        keys.update(_name_keys(given, family, postal))
    local, _ = _email_parts(_email(email))
    if local:
        keys.add(f"e:{local}")
    phone_text = _text(phone)
    if phone_text is not None:
        keys.add(f"p:{phone_text}")
    return keys


def find_duplicates(
    candidates: Iterable[Candidate], thresholds: Thresholds = Thresholds(), max_block_size: int = 200
) -> Iterator[DuplicatePair]:
    """Yield each pair of members sharing a blocking key that `score_pair` scores at `thresholds.review` or more.

    Each pair is yielded once, lower member id first, ordered by (first_id, second_id). Blocks of more than
    `max_block_size` members are compared in a sorted neighbourhood of that width (see the module docstring).
    """
    if max_block_size < 1:
        raise ValueError(f"max_block_size must be at least 1, got {max_block_size}")
    return _find_duplicates(sorted(candidates, key=lambda c: c.member_id), thresholds, max_block_size)


def _find_duplicates(people: list[Candidate], thresholds: Thresholds, window: int) -> Iterator[DuplicatePair]:
    profiles = [_candidate_profile(person) for person in people]
    blocks_of = _blocks(people, profiles, window)
    # A ratio a hair under the cutoff may still round to the threshold; `_score` makes the exact call.
    cutoff = max(0.0, thresholds.review * 100 - 1e-6)
    for first, person in enumerate(people):
        hits: set[int] = set()
        for block in blocks_of[first]:
            hits.update(_block_hits(first, block, profiles[first], cutoff, window))
        for second in sorted(hits):
            if people[second].member_id == person.member_id:
                continue
            score, reasons = _score(profiles[first], profiles[second], thresholds)
            if score >= thresholds.review:
                yield DuplicatePair(person.member_id, people[second].member_id, score, reasons)


def candidate_keys(person: Candidate) -> set[str]:
    """`blocking_keys` of a stored member."""
    return blocking_keys(
        person.given_name,
        person.family_name,
        person.full_name,
        person.email,
        person.phone,
        postal_code=person.postal_code,
    )


def _blocks(people: list[Candidate], profiles: list[Profile], window: int) -> list[list[_Block]]:
    members: dict[str, list[int]] = {}
    for index, (person, profile) in enumerate(zip(people, profiles, strict=True)):
        keys = candidate_keys(person)
        if profile.email is not None:
            keys.add(f"@{profile.email}")
        for key in keys:
            members.setdefault(key, []).append(index)
    blocks_of: list[list[_Block]] = [[] for _ in people]
    for key, indices in members.items():
        if len(indices) > 1:
            block = _block(indices, profiles, window, is_email=key.startswith("@"))
            for index in indices:
                blocks_of[index].append(block)
    return blocks_of


def _block(indices: list[int], profiles: list[Profile], window: int, *, is_email: bool) -> _Block:
    if len(indices) <= window:
        order, position = indices, None
    else:
        order = sorted(indices, key=lambda i: (profiles[i].sorted_name, i))
        position = {index: pos for pos, index in enumerate(order)}
    sorted_names = [profiles[i].sorted_name for i in order]
    ordered_names = [profiles[i].ordered_name for i in order]
    return _Block(order, sorted_names, ordered_names, position, is_email)


def _block_hits(first: int, block: _Block, profile: Profile, cutoff: float, window: int) -> list[int]:
    if block.position is None:
        start, stop = bisect_right(block.order, first), len(block.order)
    else:
        pos = block.position[first]
        start, stop = max(0, pos - window), pos + window + 1
    others = block.order[start:stop]
    if block.is_email or not others:
        return [other for other in others if other > first]
    hits: list[int] = []
    for query, names in ((profile.sorted_name, block.sorted_names), (profile.ordered_name, block.ordered_names)):
        if query:
            found = process.extract(query, names[start:stop], scorer=fuzz.ratio, score_cutoff=cutoff, limit=None)
            hits.extend(others[offset] for _, _, offset in found)
    return hits if block.position is None else [other for other in hits if other > first]


def _phone_decision(
    profile: Profile, given: str, by_phone: Sequence[Candidate], thresholds: Thresholds
) -> tuple[MatchDecision | None, tuple[str, ...]]:
    if profile.phone is None:
        return None, ()
    sharing = {c.member_id: c for c in by_phone if _text(c.phone) == profile.phone}
    if len(sharing) > 1:
        return None, (f"phone is shared by {len(sharing)} members ({_id_list(sharing)}): not decisive",)
    if not sharing:
        return None, ()
    (member,) = sharing.values()
    other_given = _first_given(member.given_name, member.full_name)
    # Households share a phone but not a given name; a changed family name (marriage) keeps the given name.
    if given and other_given:
        similarity = fuzz.ratio(given, other_given) / 100.0
        if similarity < thresholds.review:
            return None, (f"phone matches member {member.member_id} but given names differ ({similarity:.2f})",)
    return MatchDecision(MatchKind.PHONE, member.member_id, 1.0, ("phone matches",)), ()


def _fuzzy_decision(
    profile: Profile, pools: Sequence[CandidatePool], thresholds: Thresholds, notes: tuple[str, ...]
) -> MatchDecision:
    worth = _worth_scoring(profile, pools, thresholds)
    best: tuple[float, int, tuple[str, ...]] | None = None
    for member_id in sorted(worth):
        score, reasons = _score(profile, worth[member_id], thresholds)
        if best is None or score > best[0]:
            best = (score, member_id, reasons)
    if best is None:
        return MatchDecision(MatchKind.NEW, None, 0.0, (*notes, "no existing member to compare with"))
    score, member_id, reasons = best
    if score >= thresholds.auto_merge:
        return MatchDecision(MatchKind.FUZZY, member_id, score, (*notes, *reasons))
    if score >= thresholds.review:
        return MatchDecision(MatchKind.REVIEW, member_id, score, (*notes, *reasons))
    below = f"best candidate, member {member_id}, scored {score:.2f}, below review {thresholds.review:.2f}"
    return MatchDecision(MatchKind.NEW, None, 0.0, (*notes, below, *reasons))


def _worth_scoring(profile: Profile, pools: Sequence[CandidatePool], thresholds: Thresholds) -> dict[int, Profile]:
    """The candidates whose score can be the best, by member id: those whose name similarity reaches just below
    review, those with the same email, and, when none reaches it, the most similar name of all.

    A candidate below that similarity scores its similarity whatever its second signals, so none of them can
    beat the most similar one; leaving them out is what lets rapidfuzz compare a pool's names in C.
    """
    worth: dict[int, Profile] = {}
    if not profile.sorted_name:
        for pool in pools:
            worth.update(zip(pool.member_ids, pool.profiles, strict=True))
        return worth
    cutoff = 100.0 * max(0.0, thresholds.review - _CAP_MARGIN) - _SCORE_SLACK
    nearest: list[tuple[float, int, Profile]] = []
    for pool in pools:
        hits, best = pool.similar(profile, cutoff)
        for index in hits:
            worth[pool.member_ids[index]] = pool.profiles[index]
        if profile.email is not None:
            worth.update(pool.with_email(profile.email))
        if best is not None:
            score, index = best
            nearest.append((-score, pool.member_ids[index], pool.profiles[index]))
    if not worth and nearest:
        # The most similar name of all, the lowest member id on a tie.
        _, member_id, most = min(nearest, key=lambda item: item[:2])
        worth[member_id] = most
    return worth


def _score(first: Profile, second: Profile, thresholds: Thresholds) -> tuple[float, tuple[str, ...]]:
    if first.email is not None and first.email == second.email:
        return 1.0, ("email matches",)
    if not (first.sorted_name and second.sorted_name):
        return 0.0, ("no name to compare",)
    similarity = _name_similarity(first, second)
    reasons = [f"name similarity {similarity:.2f} (token sort ratio)", *_second_signals(first, second)]
    if len(reasons) > 1:
        return similarity, tuple(reasons)
    # A name alone proves little (how many John Smiths has a club?): only a near-identical name is worth a
    # person's review, and never an automatic merge; anything less is not reported at all.
    cap = max(0.0, thresholds.auto_merge - _CAP_MARGIN)
    if similarity >= thresholds.auto_merge:
        return cap, (*reasons, f"no second signal: score capped at {cap:.2f}")
    floor = max(0.0, thresholds.review - _CAP_MARGIN)
    return min(similarity, floor), (*reasons, "no second signal and not a near-identical name")


def _name_similarity(first: Profile, second: Profile) -> float:
    sorted_ratio = fuzz.ratio(first.sorted_name, second.sorted_name)
    ordered_ratio = fuzz.ratio(first.ordered_name, second.ordered_name)
    return max(sorted_ratio, ordered_ratio) / 100.0


def _second_signals(first: Profile, second: Profile) -> list[str]:
    signals: list[str] = []
    if first.phone is not None and first.phone == second.phone:
        signals.append("phone matches")
    if first.postal is not None and first.postal == second.postal:
        signals.append("postal code matches")
    email = _email_signal(first, second)
    if email is not None:
        signals.append(email)
    return signals


def _email_signal(first: Profile, second: Profile) -> str | None:
    if not (first.email_local and second.email_local):
        return None
    if first.email_domain == second.email_domain:
        return "email matches apart from dots and +tags" if first.email_local == second.email_local else None
    similarity = fuzz.ratio(first.email_local, second.email_local) / 100.0
    if similarity >= EMAIL_LOCAL_SIMILARITY:
        return f"email local part similarity {similarity:.2f} at a different domain"
    return None


def record_profile(record: NormalisedRecord) -> Profile:
    address = record.value("address")
    postal = address.get("postal_code") if isinstance(address, dict) else None
    return _profile(
        record.value("given_name"),
        record.value("family_name"),
        record.value("full_name"),
        record.value("email"),
        record.value("phone"),
        postal,
    )


# Members come back as candidates page after page; their profiles are worth keeping.
@functools.lru_cache(maxsize=100_000)
def _candidate_profile(candidate: Candidate) -> Profile:
    return _profile(
        candidate.given_name,
        candidate.family_name,
        candidate.full_name,
        candidate.email,
        candidate.phone,
        candidate.postal_code,
    )


def _profile(given: object, family: object, full: object, email: object, phone: object, postal: object) -> Profile:
    given_text, family_text, full_text = _text(given), _text(family), _text(full)
    if given_text and family_text:
        name = f"{given_text} {family_text}"
    elif full_text is not None:
        family_first, comma, given_last = full_text.partition(",")
        name = f"{given_last} {family_first}" if comma else full_text
    else:
        name = given_text or family_text or ""
    ordered, email_text = _fold(name), _email(email)
    local, domain = _email_parts(email_text)
    return Profile(" ".join(sorted(ordered.split())), ordered, email_text, local, domain, _text(phone), _postal(postal))


def _name_variants(given: object, family: object, full: object) -> list[tuple[str, str]]:
    variants: list[tuple[str, str]] = []
    given_part, family_part = _compact(_text(given)), _compact(_text(family))
    if given_part or family_part:
        variants.append((given_part, family_part))
    full_text = _text(full)
    if full_text is not None:
        variants.append(_split_full_name(full_text))
    return variants


def _first_given(given: object, full: object) -> str:
    given_text, full_text = _text(given), _text(full)
    if given_text is not None:
        return next(iter(_fold(given_text).split()), "")
    return "" if full_text is None else _split_full_name(full_text)[0]


def _split_full_name(full: str) -> tuple[str, str]:
    if "," in full:
        family, _, given = full.partition(",")
        return _compact(given), _compact(family)
    tokens = _fold(full).split()
    if len(tokens) < 2:
        return ("".join(tokens), "")
    return tokens[0], tokens[-1]


def _name_keys(given: str, family: str, postal: str | None) -> set[str]:
    keys: set[str] = set()
    if given and family:
        keys.update((f"n:{family[:3]}{given[0]}", f"n:{given[:3]}{family[0]}"))
    elif given or family:
        keys.add(f"n:{(given or family)[:3]}")
    if postal is not None:
        keys.update(f"z:{postal}:{part[0]}" for part in (given, family) if part)
    return keys


# What `_fold` does to ASCII text, as one table: letters lower-cased, apostrophes dropped, the rest a space.
_ASCII_FOLD = str.maketrans(
    {
        chr(code): None if chr(code) in _APOSTROPHES else chr(code).lower() if chr(code).isalnum() else " "
        for code in range(128)
    }
)


@functools.lru_cache(maxsize=200_000)
def _fold(text: str) -> str:
    if text.isascii():
        return " ".join(text.translate(_ASCII_FOLD).split())
    return fold_unicode(text)


def fold_unicode(text: str) -> str:
    """A name folded for comparison (see the module docstring); `_fold` takes ASCII text a shorter way."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    kept = (
        ch if ch.isalnum() else " "
        for ch in decomposed.translate(_SPELLED_OUT)
        if ch not in _APOSTROPHES and not unicodedata.combining(ch)
    )
    return " ".join("".join(kept).split())


def _compact(text: str | None) -> str:
    return "" if text is None else _fold(text).replace(" ", "")


def _email_parts(email: str | None) -> tuple[str, str]:
    local, at, domain = (email or "").rpartition("@")
    return (local.partition("+")[0].replace(".", ""), domain) if at else ("", "")


def _email(value: object) -> str | None:
    text = _text(value)
    return None if text is None else text.casefold()


def _postal(value: object) -> str | None:
    text = _text(value)
    compact = "" if text is None else "".join(ch for ch in text.casefold() if ch.isalnum())
    return compact or None


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    stripped = value.strip()
    return stripped or None


def _id_list(ids: Iterable[int]) -> str:
    ordered = sorted(ids)
    listed = ", ".join(str(member_id) for member_id in ordered[:_LISTED_IDS])
    return listed if len(ordered) <= _LISTED_IDS else f"{listed}, ..."


def _link_reason(record: NormalisedRecord) -> str:
    if record.external_id is None:
        return f"the record is linked in {record.source}"
    return f"external id {record.external_id} is linked in {record.source}"
