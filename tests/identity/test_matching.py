"""Identity matching: decision order, the second-signal rule, blocking keys and duplicate detection."""

from __future__ import annotations

import itertools
import random
import string
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from membersync.identity.matching import (
    Candidate,
    CandidatePool,
    DuplicatePair,
    MatchDecision,
    MatchKind,
    Thresholds,
    _fold,  # the ASCII short cut, checked against the general fold
    blocking_keys,
    candidate_keys,
    decide,
    find_duplicates,
    fold_unicode,
    record_profile,
    score_pair,
)
from membersync.identity.schemas import FieldValue, NormalisedRecord

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def record(external_id: str | None = "CRM-1", **values: Any) -> NormalisedRecord:
    fields = {
        name: FieldValue(value, source="crm", changed_at=AT) for name, value in values.items() if value is not None
    }
    return NormalisedRecord(source="crm", external_id=external_id, changed_at=AT, values=fields)


def member(
    member_id: int,
    *,
    email: str | None = None,
    phone: str | None = None,
    given: str | None = None,
    family: str | None = None,
    full: str | None = None,
    postal: str | None = None,
) -> Candidate:
    return Candidate(member_id, email, phone, given, family, full, postal)


def run(
    incoming: NormalisedRecord,
    *,
    linked: int | None = None,
    by_email: Candidate | None = None,
    by_phone: list[Candidate] | None = None,
    by_name: list[Candidate] | None = None,
    thresholds: Thresholds | None = None,
) -> MatchDecision:
    return decide(
        incoming,
        linked=linked,
        by_email=by_email,
        by_phone=by_phone or [],
        by_name=by_name or [],
        thresholds=thresholds or Thresholds(),
    )


ADA = record(email="ada@example.org", phone="+441234567890", given_name="Ada", family_name="Lovelace")


# --- decision order -------------------------------------------------------------------------------------------


def test_link_beats_email() -> None:
    decision = run(ADA, linked=7, by_email=member(3, email="ada@example.org"))

    assert decision == MatchDecision(MatchKind.LINKED, 7, 1.0, ("external id CRM-1 is linked in crm",))


def test_link_without_external_id_still_has_a_reason() -> None:
    decision = run(record(external_id=None), linked=7)

    assert decision.kind is MatchKind.LINKED
    assert decision.reasons == ("the record is linked in crm",)


def test_email_beats_phone() -> None:
    decision = run(
        ADA,
        by_email=member(3, email="ada@example.org"),
        by_phone=[member(4, phone="+441234567890", given="Ada", family="Lovelace")],
    )

    assert decision == MatchDecision(MatchKind.EMAIL, 3, 1.0, ("email matches",))


def test_email_is_compared_case_insensitively() -> None:
    decision = run(ADA, by_email=member(3, email="Ada@Example.org"))

    assert (decision.kind, decision.member_id) == (MatchKind.EMAIL, 3)


def test_a_profile_made_beforehand_is_the_one_compared() -> None:
    grace = record(email="grace@example.org", given_name="Grace", family_name="Hopper")
    twin = member(3, email="grace@example.org")

    assert decide(ADA, linked=None, by_email=twin, by_phone=[], profile=record_profile(grace)).kind is MatchKind.EMAIL
    assert decide(ADA, linked=None, by_email=twin, by_phone=[], profile=record_profile(ADA)).kind is MatchKind.NEW


def test_a_by_email_candidate_with_another_email_is_not_an_email_match() -> None:
    decision = run(ADA, by_email=member(3, email="someone@example.org"))

    assert decision.kind is MatchKind.NEW


def test_one_member_with_the_phone_is_a_phone_match() -> None:
    decision = run(ADA, by_phone=[member(4, phone="+441234567890", given="Ada", family="Lovelace")])

    assert decision == MatchDecision(MatchKind.PHONE, 4, 1.0, ("phone matches",))


def test_phone_beats_fuzzy_name() -> None:
    by_name = [member(2, given="Ada", family="Lovelace", postal="N1 9GU")]
    decision = run(ADA, by_phone=[member(4, phone="+441234567890", full="Ada King")], by_name=by_name)

    assert (decision.kind, decision.member_id) == (MatchKind.PHONE, 4)


def test_phone_match_without_a_name_on_either_side_is_decisive() -> None:
    decision = run(record(phone="+441234567890"), by_phone=[member(4, phone="+441234567890")])

    assert (decision.kind, decision.member_id) == (MatchKind.PHONE, 4)


def test_phone_on_another_given_name_is_not_decisive() -> None:
    decision = run(ADA, by_phone=[member(4, phone="+441234567890", given="George", family="Lovelace")])

    assert (decision.kind, decision.member_id) == (MatchKind.NEW, None)
    assert decision.reasons[0] == "phone matches member 4 but given names differ (0.00)"


def test_phone_on_a_nickname_falls_through_to_review() -> None:
    incoming = record(phone="+441234567890", full_name="Robert Byron")
    decision = run(incoming, by_phone=[member(4, phone="+441234567890", full="Bob Byron")])

    assert (decision.kind, decision.member_id) == (MatchKind.REVIEW, 4)
    assert decision.reasons[-1] == "phone matches"


def test_phone_compares_the_first_given_name_only() -> None:
    decision = run(ADA, by_phone=[member(4, phone="+441234567890", given="Ada Augusta", family="King")])

    assert (decision.kind, decision.member_id) == (MatchKind.PHONE, 4)


def test_phone_on_a_changed_family_name_is_decisive() -> None:
    decision = run(ADA, by_phone=[member(4, phone="+441234567890", full="King, Ada")])

    assert (decision.kind, decision.member_id) == (MatchKind.PHONE, 4)


def test_shared_phone_is_not_decisive_and_falls_through_to_fuzzy() -> None:
    sharing = [
        member(4, phone="+441234567890", given="Ada", family="Lovelace"),
        member(5, phone="+441234567890", given="Annabella", family="Byron"),
    ]
    decision = run(ADA, by_phone=sharing)

    assert (decision.kind, decision.member_id, decision.score) == (MatchKind.FUZZY, 4, 1.0)
    assert decision.reasons[0] == "phone is shared by 2 members (4, 5): not decisive"
    assert "phone matches" in decision.reasons


def test_shared_phone_with_no_similar_name_is_new() -> None:
    sharing = [
        member(4, phone="+441234567890", given="George", family="Byron"),
        member(5, phone="+441234567890", given="Annabella", family="Byron"),
    ]
    decision = run(ADA, by_phone=sharing)

    assert (decision.kind, decision.member_id, decision.score) == (MatchKind.NEW, None, 0.0)
    assert decision.reasons[0] == "phone is shared by 2 members (4, 5): not decisive"


def test_many_members_sharing_a_phone_are_listed_briefly() -> None:
    sharing = [member(i, phone="+441234567890", given="X", family="Y") for i in range(1, 9)]
    decision = run(ADA, by_phone=sharing)

    assert decision.reasons[0] == "phone is shared by 8 members (1, 2, 3, 4, 5, ...): not decisive"


def test_candidates_with_another_phone_do_not_count_as_sharing() -> None:
    by_phone = [member(4, phone="+441234567890", full="Ada Lovelace"), member(5, phone="+449999999999", full="X Y")]

    assert run(ADA, by_phone=by_phone).kind is MatchKind.PHONE


# --- fuzzy matching and the second-signal rule ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "signal"),
    [
        (member(2, given="Ada", family="Lovelace", phone="+441234567890"), "phone matches"),
        (member(2, given="Ada", family="Lovelace", postal="n1 9gu"), "postal code matches"),
        (
            member(2, full="Ada Lovelace", email="ada@work.example"),
            "email local part similarity 1.00 at a different domain",
        ),
    ],
)
def test_same_name_with_a_second_signal_is_a_fuzzy_match(candidate: Candidate, signal: str) -> None:
    incoming = record(
        email="ada@example.org",
        phone="+441234567890",
        given_name="Ada",
        family_name="Lovelace",
        address={"postal_code": "N1 9GU"},
    )
    decision = run(incoming, by_name=[candidate])

    assert decision == MatchDecision(MatchKind.FUZZY, 2, 1.0, ("name similarity 1.00 (token sort ratio)", signal))


def test_same_name_without_a_second_signal_is_at_most_review() -> None:
    decision = run(ADA, by_name=[member(2, given="Ada", family="Lovelace", phone="+449999999999")])

    assert decision.kind is MatchKind.REVIEW
    assert decision.member_id == 2
    assert decision.score == pytest.approx(0.91)
    assert decision.reasons[-1] == "no second signal: score capped at 0.91"


def test_similar_email_local_part_at_the_same_domain_is_no_signal() -> None:
    incoming = record(email="john.smith@acme.example", full_name="John Smith")
    decision = run(incoming, by_name=[member(2, full="John Smith", email="jon.smith@acme.example")])

    assert decision.kind is MatchKind.REVIEW


def test_email_equal_apart_from_dots_and_tags_is_a_signal() -> None:
    incoming = record(email="ada.lovelace+news@gmail.example", full_name="Ada Lovelace")
    decision = run(incoming, by_name=[member(2, full="Ada Lovelace", email="adalovelace@gmail.example")])

    assert decision.kind is MatchKind.FUZZY
    assert "email matches apart from dots and +tags" in decision.reasons


def test_typo_with_a_second_signal_scores_the_name_similarity() -> None:
    decision = run(ADA, by_name=[member(2, given="Adda", family="Lovelace", phone="+441234567890")])

    assert decision.kind is MatchKind.FUZZY
    assert decision.score == pytest.approx(1 - 1 / 25)


def test_dissimilar_name_is_new_even_with_a_second_signal() -> None:
    incoming = record(full_name="Ada Lovelace", address={"postal_code": "N1 9GU"})
    decision = run(incoming, by_name=[member(2, full="Charles Babbage", postal="N1 9GU")])

    assert (decision.kind, decision.member_id, decision.score) == (MatchKind.NEW, None, 0.0)
    assert decision.reasons[0].startswith("best candidate, member 2, scored 0.")


def test_no_candidates_is_new() -> None:
    decision = run(ADA)

    assert decision == MatchDecision(MatchKind.NEW, None, 0.0, ("no existing member to compare with",))


@pytest.mark.parametrize(
    "incoming",
    [
        record(),
        record(external_id=None, email="", phone="  ", given_name=" ", full_name=""),
        record(address={"postal_code": "N1 9GU"}, membership_status="active"),
    ],
)
def test_nothing_to_match_on_is_new(incoming: NormalisedRecord) -> None:
    decision = run(incoming, by_name=[member(2, full="Ada Lovelace")], by_email=member(3, email=""))

    assert decision == MatchDecision(MatchKind.NEW, None, 0.0, ("nothing to match on",))


def test_ties_go_to_the_lowest_member_id() -> None:
    twins = [member(i, given="Ada", family="Lovelace", phone="+441234567890") for i in (9, 4, 6)]

    decision = run(ADA, by_phone=twins)

    assert (decision.kind, decision.member_id) == (MatchKind.FUZZY, 4)
    assert run(ADA, by_phone=list(reversed(twins))) == decision


def test_thresholds_are_configurable() -> None:
    candidate = member(2, given="Adda", family="Lovelace", phone="+441234567890")

    strict = run(ADA, by_name=[candidate], thresholds=Thresholds(auto_merge=0.99, review=0.9))
    lax = run(ADA, by_name=[member(2, full="Ada Lovelace")], thresholds=Thresholds(auto_merge=0.8, review=0.5))

    assert strict.kind is MatchKind.REVIEW
    assert lax.kind is MatchKind.REVIEW
    assert lax.score == pytest.approx(0.79)


@pytest.mark.parametrize(("auto_merge", "review"), [(0.7, 0.8), (1.1, 0.5), (0.9, -0.1)])
def test_inconsistent_thresholds_are_refused(auto_merge: float, review: float) -> None:
    with pytest.raises(ValueError, match="thresholds"):
        Thresholds(auto_merge=auto_merge, review=review)


# --- names: accents, scripts, order, missing parts -------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (member(1, given="José", family="García"), member(2, full="Jose Garcia")),
        (member(1, full="Søren Kierkegaard"), member(2, full="SOREN KIERKEGAARD")),
        (member(1, full="Łukasz Żółć"), member(2, full="Lukasz Zolc")),
        (member(1, full="Se\u00e1n O\u2019Brien"), member(2, full="Sean OBrien")),
        (
            member(1, full="Anne-Marie \uff24\uff55\uff50\uff4f\uff4e\uff54"),
            member(2, given="anne marie", family="dupont"),
        ),
        (member(1, full="Иван Петров"), member(2, given="ИВАН", family="ПЕТРОВ")),
        (member(1, full="Lovelace, Ada"), member(2, given="Ada", family="Lovelace")),
        (member(1, given="Lovelace", family="Ada"), member(2, given="Ada", family="Lovelace")),
    ],
)
def test_folded_names_are_equal(first: Candidate, second: Candidate) -> None:
    assert score_pair(first, second)[1][0] == "name similarity 1.00 (token sort ratio)"


def test_family_first_full_name_is_compared_in_given_order() -> None:
    # A typo in a first letter reorders sorted tokens ("huki lisa" / "cisa huki"); the given order still agrees.
    score, _ = score_pair(member(1, full="Huki, Lisa", phone="+1"), member(2, given="Cisa", family="Huki", phone="+1"))

    assert score == pytest.approx(1 - 2 / 18)


def test_different_scripts_are_not_transliterated() -> None:
    score, _ = score_pair(member(1, full="Ivan Petrov", phone="+1"), member(2, full="Иван Петров", phone="+1"))

    assert score < Thresholds().review


def test_missing_names_score_zero() -> None:
    assert score_pair(member(1, phone="+1"), member(2, phone="+1", full="Ada")) == (0.0, ("no name to compare",))
    assert score_pair(member(1), member(2)) == (0.0, ("no name to compare",))


def test_equal_emails_score_one_whatever_the_names() -> None:
    first, second = member(1, email="ada@example.org", full="Ada"), member(2, email="ada@example.org", full="Bob")

    assert score_pair(first, second) == (1.0, ("email matches",))


def test_score_pair_cap_follows_the_thresholds() -> None:
    score, reasons = score_pair(
        member(1, full="Ada Lovelace"), member(2, full="Ada Lovelace"), thresholds=Thresholds(0.8, 0.5)
    )

    assert score == pytest.approx(0.79)
    assert reasons[-1] == "no second signal: score capped at 0.79"


# --- blocking keys -----------------------------------------------------------------------------------------------


def test_blocking_keys_document_the_key_set() -> None:
    keys = blocking_keys(
        "Ada", "Lovelace", "Ada Lovelace", "Ada.Lovelace+news@example.org", "+441234567890", postal_code="N1 9GU"
    )

    assert keys == {"n:lova", "n:adal", "e:adalovelace", "p:+441234567890", "z:n19gu:a", "z:n19gu:l"}


@pytest.mark.parametrize(
    "keys",
    [
        blocking_keys("Lovelace", "Ada", None, None, None),
        blocking_keys(None, None, "Ada Lovelace", None, None),
        blocking_keys(None, None, "Lovelace Ada", None, None),
        blocking_keys(None, None, "Lovelace, Ada", None, None),
        blocking_keys("ADA", "LOVELACE", None, None, None),
    ],
)
def test_swapped_and_full_names_share_the_name_keys(keys: set[str]) -> None:
    assert keys == blocking_keys("Ada", "Lovelace", None, None, None)


def test_blocking_keys_fold_accents_and_punctuation() -> None:
    assert blocking_keys("José", "O'Brien-García", None, None, None) == {"n:obrj", "n:joso"}


def test_single_name_and_union_of_parts_and_full_name() -> None:
    assert blocking_keys("Cher", None, None, None, None) == {"n:che"}
    assert blocking_keys("Ada", "King", "Ada Lovelace", None, None) == {"n:kina", "n:adak", "n:lova", "n:adal"}


@pytest.mark.parametrize(
    "arguments",
    [
        (None, None, None, None, None),
        ("", " ", "  ", "", ""),
        (None, None, "!!!", "no-at-sign", None),
        (None, None, None, "+tag@example.org", None),
    ],
)
def test_blocking_keys_are_empty_when_nothing_is_usable(arguments: tuple[str | None, ...]) -> None:
    assert blocking_keys(*arguments) == set()


# --- duplicate detection -----------------------------------------------------------------------------------------


def test_find_duplicates_reports_each_pair_once_lower_id_first() -> None:
    shared = {"phone": "+441234567890", "postal": "N1 9GU", "email": "ada@example.org"}
    people = [member(8, given="Ada", family="Lovelace", **shared), member(3, full="Ada Lovelace", **shared)]

    assert list(find_duplicates(people)) == [DuplicatePair(3, 8, 1.0, ("email matches",))]


def test_find_duplicates_skips_pairs_below_review_and_repeated_ids() -> None:
    people = [
        member(1, full="Ada Lovelace", phone="+1"),
        member(2, full="Charles Babbage", phone="+1"),
        member(1, full="Ada Lovelace", phone="+1"),
    ]

    assert list(find_duplicates(people)) == []


def test_find_duplicates_finds_equal_emails_with_different_names() -> None:
    people = [
        member(1, full="Ada Lovelace", email="family@example.org"),
        member(2, full="Byron", email="family@example.org"),
    ]

    assert [(p.first_id, p.second_id, p.score) for p in find_duplicates(people)] == [(1, 2, 1.0)]


def test_find_duplicates_reports_name_only_pairs_for_review() -> None:
    people = [member(1, full="Ada Lovelace"), member(2, full="Lovelace Ada", phone="+2")]

    (pair,) = find_duplicates(people)

    assert (pair.first_id, pair.second_id) == (1, 2)
    assert pair.score == pytest.approx(0.91)


def brute_force(people: list[Candidate]) -> list[DuplicatePair]:
    pairs = []
    for first, second in itertools.combinations(sorted(people, key=lambda c: c.member_id), 2):
        score, reasons = score_pair(first, second)
        shared = candidate_keys(first) & candidate_keys(second) or reasons == ("email matches",)
        if shared and score >= Thresholds().review and first.member_id != second.member_id:
            pairs.append(DuplicatePair(first.member_id, second.member_id, score, reasons))
    return pairs


def test_find_duplicates_matches_brute_force_within_blocks() -> None:
    rng = random.Random(3)
    people = [
        member(
            i,
            given=rng.choice(["Ada", "Adah", "Ida", "Lovelace", None]),
            family=rng.choice(["Lovelace", "Lovelance", "Byron", "Ada", None]),
            full=rng.choice(["Ada Lovelace", "A Lovelace", None]),
            email=rng.choice([None, "ada@x.example", "ada@y.example", "a.da@x.example"]),
            phone=rng.choice([None, "+1", "+2"]),
            postal=rng.choice([None, "N1", "N2"]),
        )
        for i in range(1, 121)
    ]

    found = list(find_duplicates(people))

    assert len(found) > 100
    assert found == brute_force(people)


def test_find_duplicates_does_not_depend_on_input_order() -> None:
    people = [member(i, full=f"Ada Lovelace{'x' * (i % 3)}", phone=f"+{i % 4}") for i in range(1, 40)]
    shuffled = random.Random(5).sample(people, len(people))

    assert list(find_duplicates(shuffled)) == list(find_duplicates(people))


def test_email_shared_by_more_than_a_block_is_paired_in_a_neighbourhood() -> None:
    people = [member(i, email="family@example.org", full=f"Person {string.ascii_lowercase[i]}") for i in range(1, 11)]

    found = [(pair.first_id, pair.second_id) for pair in find_duplicates(people, max_block_size=2)]

    assert (1, 2) in found
    assert (1, 3) in found
    assert (1, 4) not in found
    assert all(pair.score == 1.0 for pair in find_duplicates(people, max_block_size=2))


def test_large_blocks_are_compared_in_a_sorted_neighbourhood() -> None:
    rng = random.Random(11)
    # Every "Jon... Smith" shares both name keys, n:smij and n:jons: two blocks far over max_block_size.
    smiths = [
        member(i, given="Jon" + "".join(rng.choices(string.ascii_lowercase, k=5)), family="Smith", phone=f"+44{i}")
        for i in range(1, 2001)
    ]
    typo = member(5000, given=smiths[700].given_name, family="Smiht", phone=smiths[700].phone)
    twins = [member(6000, given="Jonathan", family="Smith"), member(6001, given="Jonathon", family="Smith")]

    found = {(p.first_id, p.second_id): p for p in find_duplicates([*smiths, typo, *twins], max_block_size=50)}

    assert found[(701, 5000)].reasons[-1] == "phone matches"
    assert found[(6000, 6001)].reasons[-1] == "no second signal: score capped at 0.91"
    assert all(pair.score < 0.92 for key, pair in found.items() if key != (701, 5000))
    assert len(found) < 2001 * 2 * 50


def test_max_block_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_block_size"):
        find_duplicates([], max_block_size=0)


CONSONANTS, VOWELS = "bcdfghjklmnprstvwz", "aeiou"
GIVEN_NAMES = [
    "Ada",
    "Alan",
    "Grace",
    "Edsger",
    "Barbara",
    "Donald",
    "Margaret",
    "Dennis",
    "Frances",
    "Ken",
    "Radia",
    "Tim",
    "Linus",
    "Guido",
    "Anita",
    "Katherine",
    "Dorothy",
    "John",
    "Mary",
    "James",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "William",
    "Elizabeth",
    "David",
    "Susan",
    "Richard",
    "Jessica",
    "Joseph",
    "Sarah",
    "Thomas",
    "Karen",
    "Charles",
    "Nancy",
    "Christopher",
    "Lisa",
    "Daniel",
    "Betty",
    "José",
    "Zoë",
    "Søren",
    "Chloé",
    "Björn",
    "Łukasz",
    "Иван",
    "Aiko",
]


def _typo(rng: random.Random, text: str) -> str:
    at, letter = rng.randrange(len(text)), rng.choice(string.ascii_lowercase)
    edits = (
        text[:at] + letter + text[at + 1 :],
        text[:at] + text[at + 1 :] if len(text) > 3 else text + letter,
        text[:at] + letter + text[at:],
        text[:at] + text[at + 1 : at + 2] + text[at : at + 1] + text[at + 2 :],
    )
    return rng.choice(edits)


def _synthetic_member(rng: random.Random, member_id: int, postal_codes: list[str]) -> Candidate:
    given = rng.choice(GIVEN_NAMES)
    syllables = rng.randint(2, 3)
    family = "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(syllables)).capitalize()
    email = f"{given.lower()}.{family.lower()}{rng.randint(1, 99)}@{rng.choice(['a.example', 'b.example'])}"
    phone = f"+447{rng.randrange(10**9):09d}" if rng.random() < 0.9 else None
    if rng.random() < 0.2:
        return member(member_id, email=email, phone=phone, full=f"{family}, {given}", postal=rng.choice(postal_codes))
    return member(member_id, email=email, phone=phone, given=given, family=family, postal=rng.choice(postal_codes))


def _near_duplicate(rng: random.Random, original: Candidate, member_id: int, postal_codes: list[str]) -> Candidate:
    family, _, given = (original.full_name or f"{original.family_name}, {original.given_name}").partition(", ")
    given, family = (_typo(rng, given), family) if rng.random() < 0.5 else (given, _typo(rng, family))
    if original.phone is not None and rng.random() < 0.5:
        return member(member_id, phone=original.phone, given=given, family=family, postal=rng.choice(postal_codes))
    phone = f"+447{rng.randrange(10**9):09d}"
    return member(member_id, email=None, phone=phone, given=given, family=family, postal=original.postal_code)


def test_find_duplicates_recalls_planted_near_duplicates_among_20000() -> None:
    rng = random.Random(7)
    postal_codes = [
        f"{rng.choice(string.ascii_uppercase)}{rng.randint(1, 99)} {rng.randint(1, 9)}AB" for _ in range(2000)
    ]
    people = [_synthetic_member(rng, member_id, postal_codes) for member_id in range(1, 19_601)]
    planted = set()
    for offset, original in enumerate(rng.sample(people, 400), start=len(people) + 1):
        people.append(_near_duplicate(rng, original, offset, postal_codes))
        planted.add((original.member_id, offset))
    rng.shuffle(people)

    found = {(pair.first_id, pair.second_id) for pair in find_duplicates(people)}

    assert len(found & planted) >= 0.95 * len(planted)


# --- properties --------------------------------------------------------------------------------------------------

maybe_text = st.none() | st.text(max_size=30)
candidates = st.builds(
    Candidate,
    member_id=st.integers(1, 20),
    email=maybe_text | st.emails(),
    phone=maybe_text | st.sampled_from(["+441234567890", "+15550000000"]),
    given_name=maybe_text | st.sampled_from(["Ada", "José", "ADA"]),
    family_name=maybe_text | st.sampled_from(["Lovelace", "Lovelace-King"]),
    full_name=maybe_text,
    postal_code=maybe_text,
)
raw_values = (
    st.none() | st.text(max_size=30) | st.integers() | st.dictionaries(st.text(max_size=12), st.text(max_size=12))
)


@settings(max_examples=200, deadline=None)
@given(
    values=st.dictionaries(
        st.sampled_from(["email", "phone", "given_name", "family_name", "full_name", "address"]), raw_values
    ),
    external_id=maybe_text,
    linked=st.none() | st.integers(1, 20),
    by_email=st.none() | candidates,
    by_phone=st.lists(candidates, max_size=4),
    by_name=st.lists(candidates, max_size=4),
)
def test_decide_never_raises_and_always_explains(
    values: dict[str, Any],
    external_id: str | None,
    linked: int | None,
    by_email: Candidate | None,
    by_phone: list[Candidate],
    by_name: list[Candidate],
) -> None:
    decision = run(record(external_id, **values), linked=linked, by_email=by_email, by_phone=by_phone, by_name=by_name)

    assert decision.reasons
    assert all(decision.reasons)
    assert 0.0 <= decision.score <= 1.0
    assert (decision.member_id is None) == (decision.kind is MatchKind.NEW)


@settings(max_examples=200, deadline=None)
@given(first=candidates, second=candidates)
def test_score_pair_is_symmetric_and_bounded(first: Candidate, second: Candidate) -> None:
    score, reasons = score_pair(first, second)

    assert score_pair(second, first) == (score, reasons)
    assert 0.0 <= score <= 1.0
    assert reasons


@settings(max_examples=200, deadline=None)
@given(people=st.lists(candidates, max_size=8))
def test_find_duplicates_agrees_with_all_pairs(people: list[Candidate]) -> None:
    assert list(find_duplicates(people)) == brute_force(people)


@settings(max_examples=200, deadline=None)
@given(given_name=maybe_text, family_name=maybe_text, postal=maybe_text)
def test_blocking_keys_ignore_name_order(given_name: str | None, family_name: str | None, postal: str | None) -> None:
    keys = blocking_keys(given_name, family_name, None, None, None, postal_code=postal)

    assert keys == blocking_keys(family_name, given_name, None, None, None, postal_code=postal)


near_names = st.sampled_from(
    ["Ada Lovelace", "Ada Lovelac", "Adda Lovelace", "Ada King", "Lovelace Ada", "Ad Love", ""]
)
near_candidates = st.builds(
    Candidate,
    member_id=st.integers(1, 30),
    email=st.sampled_from([None, "ada@example.org", "ada@elsewhere.example", "a.l@example.org"]),
    phone=st.none(),
    given_name=st.none(),
    family_name=st.none(),
    full_name=near_names,
    postal_code=st.sampled_from([None, "SW1Y 4JH", "N1 9GU"]),
)


@settings(max_examples=300, deadline=None)
@given(
    full_name=near_names,
    email=st.sampled_from([None, "ada@other.example", "ada@elsewhere.example"]),
    postal=st.sampled_from([None, "SW1Y 4JH"]),
    pool=st.lists(near_candidates, max_size=12),
)
def test_a_fuzzy_decision_is_the_best_score_of_all_candidates(
    full_name: str, email: str | None, postal: str | None, pool: list[Candidate]
) -> None:
    incoming = record(full_name=full_name or None, email=email, address={"postal_code": postal} if postal else None)
    decision = run(incoming, by_name=pool)

    as_member = Candidate(0, email, None, None, None, full_name or None, postal)
    best: tuple[float, int] | None = None
    for other in sorted({c.member_id: c for c in pool}.values(), key=lambda c: c.member_id):
        score, _ = score_pair(as_member, other)
        best = (score, other.member_id) if best is None or score > best[0] else best
    if best is None or best[0] < Thresholds().review:
        assert decision.kind is MatchKind.NEW
        if best is not None and full_name:
            assert f"member {best[1]}, scored {best[0]:.2f}" in " ".join(decision.reasons)
    else:
        assert (decision.member_id, decision.score) == (best[1], best[0])


@settings(max_examples=300, deadline=None)
@given(
    full_name=near_names,
    email=st.sampled_from([None, "ada@example.org", "ada@elsewhere.example"]),
    postal=st.sampled_from([None, "SW1Y 4JH"]),
    people=st.lists(near_candidates, max_size=12, unique_by=lambda candidate: candidate.member_id),
    pool_of=st.lists(st.sets(st.integers(0, 2), min_size=1), min_size=12, max_size=12),
    data=st.data(),
)
def test_pooled_name_blocks_decide_as_one_list_of_candidates(
    full_name: str,
    email: str | None,
    postal: str | None,
    people: list[Candidate],
    pool_of: list[set[int]],
    data: st.DataObject,
) -> None:
    # A page pools each name block once; a member may sit in several blocks, and phone candidates come apart.
    incoming = record(full_name=full_name or None, email=email, address={"postal_code": postal} if postal else None)
    by_phone = data.draw(st.lists(st.sampled_from(people), max_size=2)) if people else []
    blocks: list[list[Candidate]] = [[], [], []]
    for person, pools in zip(people, pool_of, strict=False):
        for pool in pools:
            blocks[pool].append(person)

    pooled = decide(
        incoming, linked=None, by_email=None, by_phone=by_phone, name_pools=[CandidatePool(b) for b in blocks]
    )

    assert pooled == run(incoming, by_phone=by_phone, by_name=people)


@settings(max_examples=500, deadline=None)
@given(text=st.text(alphabet=st.characters(max_codepoint=127), max_size=40))
def test_ascii_names_fold_as_any_other_text(text: str) -> None:
    assert _fold(text) == fold_unicode(text)


short_names = st.text(alphabet="abe ", min_size=1, max_size=6)
pooled = st.builds(
    Candidate,
    member_id=st.integers(1, 30),
    email=st.none() | st.sampled_from(["ab@x.example", "ab@y.example", "ba@x.example"]),
    phone=st.none() | st.sampled_from(["+441234567890"]),
    given_name=st.none() | short_names,
    family_name=st.none() | short_names,
    full_name=st.none() | short_names,
    postal_code=st.none() | st.sampled_from(["N1"]),
)


@settings(max_examples=300, deadline=None)
@given(
    given_name=short_names,
    family_name=short_names,
    email=st.none() | st.sampled_from(["ab@x.example", "a.b@y.example"]),
    pools=st.lists(st.lists(pooled, max_size=6), max_size=3),
)
def test_pooled_name_candidates_decide_as_scoring_every_one_does(
    given_name: str, family_name: str, email: str | None, pools: list[list[Candidate]]
) -> None:
    """Only names within reach of review are scored, or else the most similar one: the outcome, member and
    reasons are those of scoring every candidate (the best score, the lowest member id on a tie)."""
    incoming = record(given_name=given_name, family_name=family_name, email=email, phone="+449999999999")
    as_candidate = member(0, email=email, phone="+449999999999", given=given_name, family=family_name)
    # A member id found twice is one member: pools are built from rows, and a member's row is the same everywhere.
    everyone = {c.member_id: c for pool in pools for c in pool}
    pools = [[everyone[c.member_id] for c in pool] for pool in pools]
    scored = sorted(
        ((*score_pair(as_candidate, c), c.member_id) for c in everyone.values()), key=lambda s: (-s[0], s[2])
    )

    decision = decide(incoming, linked=None, by_email=None, by_phone=[], name_pools=[CandidatePool(p) for p in pools])

    if not scored:
        assert decision.reasons == ("no existing member to compare with",)
        return
    score, reasons, member_id = scored[0]
    thresholds = Thresholds()
    if score >= thresholds.review:
        assert (decision.member_id, decision.score, decision.reasons) == (member_id, score, reasons)
    else:
        assert decision.kind is MatchKind.NEW
        assert decision.reasons[0].startswith(f"best candidate, member {member_id}, scored {score:.2f}")
        assert decision.reasons[1:] == reasons
