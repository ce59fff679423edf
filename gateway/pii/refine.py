"""Combine presidio's results with our recognizers' and settle disagreements.

The rules are general corrections of the small spaCy model's habits, measured on
`../shared/data/pii` (see benchmarks/pii_quality.py): it tags bare numbers (street numbers, postcodes,
card digits) and relative phrases ("last month") as dates, tags many given names as organisations,
and tags place names after "in"/"from" as organisations or people.
"""

from __future__ import annotations

import re

from gateway.pii.entities import Entity
from gateway.pii.gazetteer import ORG_ENDINGS, first_names, last_names

# Precedence when spans of different types overlap: structured identifiers found by checksummed or
# anchored patterns beat address blocks, which beat the NER model's guesses; dates come last.
_PRIORITY = {
    "EMAIL_ADDRESS": 5, "IBAN_CODE": 5, "CREDIT_CARD": 5, "US_SSN": 5, "IP_ADDRESS": 5, "CRYPTO": 5,
    "US_BANK_NUMBER": 4, "US_PASSPORT": 4, "US_DRIVER_LICENSE": 4, "PHONE_NUMBER": 4, "URL": 3,
    "MEDICAL_LICENSE": 4, "UK_NHS": 4,
}
_OURS_STRONG = {"street", "military_address", "street_after_cue", "street_block", "card_context", "org_form"}

_MONTHS = (r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
           r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?")
_DAYS = r"mon(?:day)?|tue(?:s(?:day)?)?|wed(?:nesday)?|thu(?:rs(?:day)?)?|fri(?:day)?|sat(?:urday)?|sun(?:day)?"
_DATE_SHAPE = re.compile(
    rf"(?i:\b(?:{_MONTHS}|{_DAYS})\b|\b(?:1[89]|20)\d{{2}}\b(?!\d)|\b\d{{1,4}}[/.-]\d{{1,2}}[/.-]\d{{1,4}}\b|\b\d{{1,2}}:\d{{2}}\b)"
)
# What people do in a sentence, right after their name ("Tomomi Nishiyama lives at", "Aloisia, can I").
_PERSON_VERB = re.compile(
    r"(?:'s)?,?[ \t]+(?:lives|lived|is from|was born|spent|began|said|says|shouted|asked|told|wrote|points out|"
    r"works|worked|joined|can you|can i|please|is a very|is very|and (?:i|me|my))\b|:[ \t]*[\"“]", re.IGNORECASE)
_DIGITS_ONLY = re.compile(r"^[\d\s.,-]+$")


def is_date_like(s: str) -> bool:
    """A date that can help identify someone: a calendar date, year, weekday, month or clock time.
    Durations and relative phrases ("last month", "the weekend", "38-year-old") are not."""
    if "year-old" in s.lower() or "years old" in s.lower():
        return False
    if _DIGITS_ONLY.match(s):
        digits = re.sub(r"\D", "", s)
        return len(digits) == 4 and 1800 <= int(digits) <= 2099 or bool(re.search(r"\d[/.-]\d", s))
    return bool(_DATE_SHAPE.search(s))


def refine(text: str, presidio: list[Entity], ours: list[Entity]) -> list[Entity]:
    firsts = first_names()
    places = [e for e in ours if e.source in ("place_after_cue", "country")]
    addresses = [e for e in ours if e.type == "LOCATION" and e.source not in ("place_after_cue", "country")]
    kept: list[Entity] = []
    for e in presidio:
        span = text[e.start:e.end]
        if e.type == "DATE_TIME" and not is_date_like(span):
            continue
        if e.source == "SpacyRecognizer" and e.type in ("PERSON", "ORGANIZATION", "LOCATION", "NRP"):
            e = _retype(text, e, span, firsts, places)
            if e is None:
                continue
        kept.append(e)
    candidates = kept + ours
    return _letterhead(text, _resolve(text, candidates, addresses))


def _letterhead(text: str, ents: list[Entity]) -> list[Entity]:
    """In a contact block (name line, then one line, then an address), the middle line is the
    organisation: "Katrina Mota / Knowledge Agency / 55470 72 Acheron Road"."""
    lines = []
    pos = 0
    for line in text.split("\n"):
        lines.append((pos, pos + len(line), line))
        pos += len(line) + 1
    out = list(ents)
    for i in range(1, len(lines) - 1):
        s, e, line = lines[i]
        core = line.strip(" \t>?")
        if not core or len(core.split()) > 5 or not core[0].isupper() or any(ch.isdigit() for ch in core):
            continue
        prev, nxt = lines[i - 1], lines[i + 1]
        if not (_starts_with(out, prev, "PERSON") and (_starts_with(out, nxt, "LOCATION") or _starts_with(out, nxt, "PERSON"))):
            continue
        inside = [k for k in out if k.start < e and k.end > s]
        if any(k.type not in ("PERSON", "LOCATION", "ORGANIZATION") for k in inside):
            continue
        for k in inside:
            out.remove(k)
        lead = s + line.find(core)
        out.append(Entity(lead, lead + len(core), "ORGANIZATION", 0.5, "letterhead"))
    out.sort(key=lambda x: x.start)
    return out


def _starts_with(ents: list[Entity], line: tuple[int, int, str], kind: str) -> bool:
    s, e, text = line
    lead = s + (len(text) - len(text.lstrip(" \t>?")))
    return any(k.type == kind and k.start <= lead + 1 and k.end > lead for k in ents)


def _retype(text: str, e: Entity, span: str, firsts: frozenset[str], places: list[Entity]) -> Entity | None:
    words = span.replace("\n", " ").split()
    if not words:
        return None
    if "\n" in span.strip():  # the model ran over a line break: keep the first line only
        first_line = span.strip().split("\n", 1)[0]
        offset = span.find(first_line)
        e = Entity(e.start + offset, e.start + offset + len(first_line), e.type, e.score, e.source)
        span, words = first_line, first_line.split()
        if not words:
            return None
    last = words[-1].lower().strip(",")
    if last in ORG_ENDINGS or (len(words) > 1 and words[-2].lower() in ("&", "and") and last in ("sons", "co", "co.")):
        return _as(e, "ORGANIZATION")
    if e.type in ("ORGANIZATION", "PERSON", "NRP") and any(p.overlaps(e) for p in places):
        return _as(e, "LOCATION")
    if e.type == "ORGANIZATION" and len(words) == 1 and span.isupper() and len(span) <= 4:
        return None  # ATM, IBAN, PIN, APO: generic acronyms, not an organisation a user disclosed
    if e.type in ("ORGANIZATION", "LOCATION", "NRP"):
        if words[0].strip(",.").upper() in firsts or _PERSON_VERB.match(text, e.end):
            return _as(e, "PERSON")
        if e.type == "ORGANIZATION" and len(words) >= 2 and words[-1].strip(",.'s").upper() in last_names():
            return _as(e, "PERSON")
    return e


def _as(e: Entity, kind: str) -> Entity:
    return e if e.type == kind else Entity(e.start, e.end, kind, e.score, e.source)


def _rank(e: Entity) -> int:
    if e.source == "custom":
        return 6  # what the policy author declared beats every built-in guess
    if e.type in _PRIORITY:
        return _PRIORITY[e.type]
    if e.source == "titled_name":
        return 4  # "Dr. Wells" is a person, whatever street suffix it ends in
    if e.source in _OURS_STRONG:
        return 3
    if e.type == "DATE_TIME":
        return 0
    return 1 if e.source != "place_after_cue" else 2


def _resolve(text: str, candidates: list[Entity], addresses: list[Entity]) -> list[Entity]:
    """Overlapping spans: the higher-ranked wins; spans of one type that overlap are merged."""
    out: list[Entity] = []
    for e in sorted(candidates, key=lambda x: (-_rank(x), -x.score, x.start)):
        clash = [k for k in out if k.overlaps(e)]
        if not clash:
            out.append(e)
            continue
        same = [k for k in clash if k.type == e.type]
        if not same:
            # A lower-ranked span that only partly overlaps keeps its own part: an address block
            # whose last line is really a phone number is still an address.
            trimmed = _trim(text, e, clash)
            if trimmed is not None:
                out.append(trimmed)
            continue
        if len(same) == len(clash):
            for k in same:
                out.remove(k)
            start = min(e.start, *(k.start for k in same))
            end = max(e.end, *(k.end for k in same))
            best = max(same, key=lambda k: _rank(k))
            out.append(Entity(start, end, e.type, max(e.score, best.score), best.source))
    out.sort(key=lambda x: x.start)
    return out


def _trim(text: str, e: Entity, clash: list[Entity]) -> Entity | None:
    start, end = e.start, e.end
    for k in clash:
        if k.start <= start and k.end >= end:
            return None
        if k.start > start:
            end = min(end, k.start)
        else:
            start = max(start, k.end)
    piece = text[start:end]
    stripped = piece.strip(" \t\n,>")
    if len(stripped) < 3 or start >= end:
        return None
    lead = piece.find(stripped)
    return Entity(start + lead, start + lead + len(stripped), e.type, e.score, e.source)
