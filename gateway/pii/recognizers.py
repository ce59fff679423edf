"""Our own recognizers for what presidio's defaults miss: street addresses (international forms,
multi-line blocks, military and PO boxes), phone numbers written without a country code but named as
such, card numbers named as such that fail the Luhn check, titled names, and place names after
locative phrases. Each is a plain function `text -> list[Entity]`; all are regular-expression based
so they also serve the regex-only (no NER) mode.
"""

from __future__ import annotations

import re

from gateway.pii.entities import Entity
from gateway.pii.gazetteer import (
    COUNTRIES, PERSON_TITLES, STREET_ENDINGS, STREET_PREFIXES, STREET_SUFFIXES, UNIT_WORDS, first_names,
    last_names,
)

_CAP = r"[A-ZÀ-ÖØ-ÞĀ-ſΑ-ΩА-Я][\w'’.-]*"  # a capitalised word, Latin, Greek or Cyrillic
_WORD = r"[\w'’.-]+"
_NUM = r"\d{1,6}[A-Za-z]?"

_suffix_alt = "|".join(sorted((re.escape(s) for s in STREET_SUFFIXES), key=len, reverse=True))
# In English addresses the street type is capitalised ("Botley Road", "Main St."): requiring that keeps
# "Irenka is" or "Petřík points" from reading as streets.
# Abbreviations that are also everyday words ("Is", "Run", "Key") are left out of this form.
_AMBIGUOUS_SUFFIXES = {"is", "un", "pr", "cp", "bg", "dl", "dm", "dv", "lf", "vl", "vw", "ky", "key", "keys", "rest",
                       "run", "union", "well", "wells", "mall", "pass", "path", "pine", "pines", "light", "lights",
                       "loaf", "lock", "locks", "fork", "forks", "view", "views", "sta", "ml", "fry", "est", "ext",
                       "spur", "trace", "track", "wall", "camp", "club", "key", "neck", "port", "mission", "station"}
_suffix_cap_alt = "|".join(sorted((re.escape(x.capitalize()) for x in STREET_SUFFIXES - _AMBIGUOUS_SUFFIXES),
                                  key=len, reverse=True))
_prefix_alt = "|".join(sorted((re.escape(s) for s in STREET_PREFIXES), key=len, reverse=True))
_ending_alt = "|".join(sorted((re.escape(s) for s in STREET_ENDINGS), key=len, reverse=True))

# "11 Botley Road", "Herceg Gateway St.", "1436 Redbud Drive"
_STREET_EN = re.compile(
    rf"(?:\b{_NUM}[ \t]+){{0,2}}(?:{_CAP}[ \t]+){{1,4}}(?:{_suffix_cap_alt})\b\.?(?:[ \t]+{_NUM}\b)?"
)
# "Rua do Arenque 1634", "ul. Biskupa Bogedaina 118", "33 avenue de Provence"
_STREET_PREFIXED = re.compile(
    rf"(?:\b{_NUM}[ \t]+){{0,2}}\b(?i:(?:{_prefix_alt}))\.?[ \t]+(?:(?:d[aeiou]s?|de[ls]?|la|le|les|du|di|del|della|van|von|der)[ \t]+)*"
    rf"{_WORD}(?:[ \t]+(?:{_CAP}|d[aeiou]s?|de[ls]?|la|le|du|di))*?(?:[ \t]+{_NUM}\b|(?=[ \t]*(?:[,\n]|$)))"
)
# "Strickstrasse 61", "Mellemstræde 74", "Kiannonkatu 98". Endings that also end English words
# ("Docstring", "Necktie", "Keyring") count only with a house number after them.
_ENGLISH_ENDINGS = ("ring", "tie", "weg", "veg", "vei", "kade", "laan", "singel", "cesta", "damm", "str.")
_ending_strict_alt = "|".join(sorted((re.escape(s) for s in STREET_ENDINGS if s not in _ENGLISH_ENDINGS), key=len, reverse=True))
_ending_english_alt = "|".join(sorted((re.escape(s) for s in _ENGLISH_ENDINGS), key=len, reverse=True))
_STREET_COMPOUND = re.compile(
    rf"(?:\b{_NUM}[ \t]+){{0,2}}\b(?:{_CAP}[ \t]+)?[A-ZÀ-ÖØ-Þ][\w'-]*(?:(?i:(?:{_ending_strict_alt}))(?!\w)(?:[ \t]+{_NUM}\b)?"
    rf"|(?i:(?:{_ending_english_alt}))(?<=\w|\.)[ \t]+{_NUM}\b)"
)
# "PSC 3294, Box 9168", "APO AA 61487", "USNS Sekerková", "P.O. Box 104", "Unit 1009 Box 0219"
_MILITARY = re.compile(
    r"\b(?i:(?:PSC|CMR|Unit)[ \t]+\d{1,5},?[ \t]+Box[ \t]+\d{1,5}|(?:APO|FPO|DPO)[ \t]+(?:AA|AE|AP)[ \t]+\d{5}"
    r"|P\.?[ \t]?O\.?[ \t]+Box[ \t]+\d{1,6})\b"
    rf"|\b(?:USNS|USNV|USS|USCGC)[ \t]+{_CAP}(?:[ \t]+{_CAP})?",
)
_UNIT = re.compile(rf"\b{UNIT_WORDS}\.?[ \t]*#?[ \t]*\d{{1,6}}[A-Za-z]?\b", re.IGNORECASE)
# A number-word(s)-number street line ("333 Golfskálinn 78"), only trusted after address context.
_NUM_STREET = re.compile(rf"\b{_NUM}[ \t]+(?:{_CAP}[ \t]+){{0,3}}{_CAP}(?:[ \t]+{_NUM}\b)?")
_ADDRESS_CUE = re.compile(
    r"(?i:\baddress(?:es)?\b[^\n]{0,12}?(?:is|:)|\b(?:lives?|living|located|stays?|moved|situated|office is|offices are|"
    r"return(?:ed)? to|ship(?:ped)? to|deliver(?:ed)? to|send (?:it )?to|drops? (?:you|me) off|stop)\s+(?:at|on|to|in)?|"
    r"\bcorner of|\bvalidate the following\?)\s*"
)

# Locality segments that follow a street line: "Apt. 316", "Vordingborg", "KRISTIANSUND N", ", CO",
# "Denmark 29587", "60810", "Cyprus (Greek) 78891".
_LOCALITY = re.compile(
    rf"(?:{UNIT_WORDS}\.?[ \t]*#?\d{{1,6}}[A-Za-z]?|{_CAP}(?:[ \t]+(?:{_CAP}|\(\w+\)|[A-Z]{{1,3}}|{_NUM}))*|[A-Z]{{2}}|\d{{3,6}}(?:-\d{{3,4}})?"
    rf"|\d{{2}}-\d{{3}})"
)
_SEP = re.compile(r"[ \t]*(?:,[ \t]*\n?|\n(?:[ \t]*\n)?)[ \t>?]*|[ \t]+|[ \t]*,[ \t]*")


def addresses(text: str) -> list[Entity]:
    """Street addresses, extended over the unit, locality, region, country and postcode that follow."""
    found: list[tuple[int, int, str]] = []
    for rx, name in ((_STREET_EN, "street"), (_STREET_PREFIXED, "street"), (_STREET_COMPOUND, "street"),
                     (_MILITARY, "military_address")):
        for m in rx.finditer(text):
            if rx is _STREET_PREFIXED and not _prefixed_street_ok(m.group()):
                continue
            if rx is _STREET_COMPOUND and _is_english_word(m.group()):
                continue
            found.append((m.start(), m.end(), name))
    for cue in _ADDRESS_CUE.finditer(text):
        m = _NUM_STREET.match(text, cue.end())
        if m and any(ch.isdigit() for ch in m.group()):
            found.append((m.start(), m.end(), "street_after_cue"))
    # "28030 Edeby 55" on a line of its own is a street when a unit, country or postcode line follows.
    for m in _NUM_STREET_LINE.finditer(text):
        if not any(s <= m.start() < e for s, e, _ in found) and _block_follows(text, m.end()):
            found.append((m.start(), m.end(), "street_block"))
    found.sort()
    merged: list[list] = []
    for s, e, name in found:
        if merged and s <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e, name])
    out = []
    for s, e, name in merged:
        e = _extend_locality(text, e)
        out.append(Entity(s, e, "LOCATION", 0.7, name))
    return out


def _is_english_word(s: str) -> bool:
    """ "During 1984" is not a street ending in -ring: the compound word is an everyday English word."""
    from gateway.detectors.views import _vocabulary

    words = [w for w in re.sub(r"\d+[A-Za-z]?", " ", s).split() if w[0].isupper()]
    return bool(words) and words[-1].lower().strip(".") in _vocabulary()


_AMBIGUOUS_PREFIXES = {"via", "os", "str", "al", "av", "bd", "largo", "corso", "plac", "ul", "strada"}


def _prefixed_street_ok(s: str) -> bool:
    """A street word that is also an everyday or code word ("via", "os", "str", "al") opens a street
    only when it is capitalised or abbreviated with a dot and the name after it is capitalised."""
    words = re.sub(r"^(?:\d+[A-Za-z]?[ \t]+)+", "", s).split()
    if len(words) < 2:
        return False
    prefix, name = words[0], words[1]
    if prefix.lower() in _AMBIGUOUS_PREFIXES and prefix[0].islower() and not prefix.endswith("."):
        return False
    return name[0].isupper() or name[0].isdigit() or name.lower() in ("do", "da", "de", "del", "della", "du", "di", "la", "le", "dos", "das")


_NUM_STREET_LINE = re.compile(rf"(?m)(?<![^\n>? \t])(?:^|(?<=[>?] ))[ \t]*{_NUM}[ \t]+(?:{_CAP}[ \t]+){{0,3}}{_CAP}(?:[ \t]+{_NUM})?[ \t]*$")


def _block_follows(text: str, end: int) -> bool:
    tail = text[end:end + 120]
    lines = [ln.strip(" \t>?,") for ln in tail.split("\n")[1:4]]
    for ln in lines:
        if _UNIT.match(ln) or ln.lower().split(" (")[0].rstrip(" 0123456789") in COUNTRIES or re.fullmatch(r"\d{4,6}", ln):
            return True
    return False


def _extend_locality(text: str, end: int) -> int:
    """Walk forward over unit / city / region / country / postcode segments of an address block."""
    for _ in range(8):
        sep = _SEP.match(text, end)
        if sep is None:
            return end
        if "\n" in sep.group() and text.count("\n", 0, end) and _line_is_prose(text, sep.end()):
            return end
        seg = _LOCALITY.match(text, sep.end())
        phone = _PHONE.match(text, sep.end())
        if seg is not None and phone is not None and phone.end() > seg.end():
            return end  # the next line is a phone number, not a postcode
        if seg is None or seg.end() == sep.end():
            return end
        words = seg.group()
        # A capitalised word after a plain space continues the address only if it is a unit, a country
        # or a city in capitals; otherwise ("... 1634 She said") it is the next sentence.
        if sep.group().strip(" \t") == "" and not (
            _UNIT.match(words) or words.lower().split(" (")[0].rstrip(" 0123456789") in COUNTRIES
            or words.isupper() or words.isdigit()
        ):
            return end
        if len(words) > 40:
            return end
        end = seg.end()
    return end


def _line_is_prose(text: str, pos: int) -> bool:
    line = text[pos:text.find("\n", pos) if "\n" in text[pos:] else len(text)]
    return len(line.split()) > 6 or line.rstrip().endswith((".", "?", "!"))


_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ \t.-]?)?(?:\(0\)[ \t]?)?(?:\(\d{1,4}\)[ \t.-]?)?\d{2,5}(?:[ \t.-]\d{2,5}){1,4}(?:[ \t]?(?:x|ext\.?)[ \t]?\d{1,5})?(?![\w])"
)
_PHONE_CUE = re.compile(
    r"(?i:\b(?:phone|mobile|cell|tel|telephone|fax|desk|office|landline|whatsapp|call(?:ed)?|dial(?:ed)?|text|sms|"
    r"number|registered|reach (?:me|us)|answering)\b)"
)


def phones(text: str) -> list[Entity]:
    """Digit groups written like phone numbers, when an international prefix or a nearby word says so."""
    out = []
    for m in _PHONE.finditer(text):
        digits = sum(ch.isdigit() for ch in m.group())
        if not 7 <= digits <= 15:
            continue
        s, e = m.start(), m.end()
        near = text[max(0, s - 40): s] + " " + text[e: e + 12]
        strong = m.group().startswith("+") or "(" in m.group()
        if strong or _PHONE_CUE.search(near):
            out.append(Entity(s, e, "PHONE_NUMBER", 0.6 if strong else 0.5, "phone_context"))
    return out


_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){11,18}(?![\w-])")
_CARD_CUE = re.compile(r"(?i:\b(?:card|cc|credit|debit|visa|mastercard|amex|pan)\b)")


def cards(text: str) -> list[Entity]:
    """12-19 digit numbers named as cards. Presidio requires a valid Luhn checksum; users mistype, and a
    mistyped card number is still a card number to withhold."""
    out = []
    for m in _CARD.finditer(text):
        near = text[max(0, m.start() - 40): m.start()]
        if _CARD_CUE.search(near):
            out.append(Entity(m.start(), m.end(), "CREDIT_CARD", 0.6, "card_context"))
    return out


_TITLED = re.compile(rf"\b{PERSON_TITLES}\.?[ \t]+{_CAP}(?:[ \t]+(?:{_CAP}|[A-Z]\.?)){{0,3}}")
_NAME_CUE = re.compile(
    r"(?i:\b(?:my name is|name is|named|called|i am|i'm|this is|under|speak (?:to|with)|ask for|husband|wife|"
    r"son|daughter|kid|child|brother|sister|mother|father|friend|boss|colleague|dear|hi|hello|thanks?,?|"
    r"regards,?|sincerely,?|name:)\s+)"
)
# Phrases after which the next capitalised words are a name, known or not.
_STRONG_NAME_CUE = re.compile(
    r"(?i:\b(?:my name is|(?:first|last|maiden|full|middle) name(?: is|\?)|surname(?: is|\?)|it'?s under|"
    r"people call me|call me|signed,|assistant to|married to|sincerely,|regards,)\s+)"
)
_NAME = re.compile(rf"{_CAP}(?:[ \t]+(?:{_CAP}|[A-Z]\.?)){{0,3}}")


def person_names(text: str) -> list[Entity]:
    """Titled names ("Dr. Jennifer Holst") and capitalised words right after a naming phrase whose first
    word is a known given name ("my kid Lukas", "it's under Elita B Desaulniers")."""
    out = [Entity(m.start(), m.end(), "PERSON", 0.7, "titled_name") for m in _TITLED.finditer(text)]
    names = first_names()
    for cue in _NAME_CUE.finditer(text):
        m = _NAME.match(text, cue.end())
        if m and m.group().split()[0].strip(".,").upper() in names:
            out.append(Entity(m.start(), m.end(), "PERSON", 0.6, "named_after_cue"))
    for cue in _STRONG_NAME_CUE.finditer(text):
        m = _NAME.match(text, cue.end())
        if m:
            out.append(Entity(m.start(), m.end(), "PERSON", 0.6, "named_after_cue"))
    return out


_PLACE_CUE = re.compile(
    r"(?i:\b(?:(?:i'?m|i am|we are|we're|live|lives|living|based|born|raised|grew up|stay(?:ing)?|arrived|located|"
    r"situated|headquartered) in|(?:flew|moved|travel(?:l?ed|l?ing)?|going|went|drive|driving|fly|flying|relocat\w+)"
    r" to|(?:originally|coming|come|comes) from|city of|town of|village of|university of|home city|home town)\s+)"
)
_WHEN = r"(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day|January|February|March|April|May|June|July|August|September|October|November|December"
_PLACE = re.compile(rf"{_CAP}(?:[ \t]+(?!(?:on|in|at)[ \t]+(?:{_WHEN})\b)(?:{_CAP}|(?:d[aeiou]s?|de|del|la|le|O'|upon|on|am|an|im|sur)(?![\w'’])))*(?<![ \t])")


def places(text: str) -> list[Entity]:
    """Countries by name, and capitalised words after locative phrases ("I'm in KAJAANI")."""
    out = []
    for m in _PLACE.finditer(text):
        if m.group().lower() in COUNTRIES:
            out.append(Entity(m.start(), m.end(), "LOCATION", 0.7, "country"))
    for cue in _PLACE_CUE.finditer(text):
        m = _PLACE.match(text, cue.end())
        if m:
            out.append(Entity(m.start(), m.end(), "LOCATION", 0.55, "place_after_cue"))
    return out


# Census given names that are also everyday English words: alone, they say nothing.
_NAME_STOP = frozenset("""
MAY JUNE APRIL AUGUST WILL BILL MARK ART PAGE ROSE HOPE JOY GRACE FAITH SUMMER AUTUMN DAWN RAY GUY RICH FRANK
SUNNY LANE CHRISTIAN KING MAJOR PRINCE DEAN JUSTICE PATIENCE CHARITY HONEY CANDY CRYSTAL AMBER RUBY PEARL IVY
HOLLY DAISY LILY VIOLET IRIS JADE STORM SKY RIVER BROOK WOOD CLIFF GLEN DALE MAX SAM VAN CAROL CHERRY MISTY
CHASE HUNTER CASH REED LONG HERO SON LOVE TRUE MEMORY ANGEL DESTINY HARMONY MELODY ROBIN SPARROW WREN ASH
GAY TERRY AN SO ON DO SEE US IN IS IT OF TO BE MY ME NO OR WE AS AT BY GO HE IF UP LA LE DE DI DA
NORTH SOUTH EAST WEST SUNDAY MONDAY TUESDAY FRIDAY ALL SALE ADAM
""".split()) - {"ADAM"}
_CAP_TOKEN = re.compile(r"(?<![\w@.])[A-ZÀ-ÖØ-Þ][a-zà-öø-ÿ'’-]{2,}(?:[ \t]+(?:[A-ZÀ-ÖØ-Þ][a-zà-öø-ÿ'’-]+|[A-Z](?![\w'’])\.?)){0,2}")


def given_names(text: str) -> list[Entity]:
    """Capitalised known given names, with the capitalised words that follow ("Ana Dias", "Magnus")."""
    names = first_names()
    out = []
    for m in _CAP_TOKEN.finditer(text):
        first = m.group().split()[0].upper()
        if first in names and first not in _NAME_STOP:
            out.append(Entity(m.start(), m.end(), "PERSON", 0.5, "given_name"))
    return out


_ORG_WORDS = (r"(?:Inc|LLC|L\.L\.C\.|Ltd|Limited|PLC|GmbH|AG|S\.A\.|SA|Corp|Corporation|Company|Co|Group|Holdings|"
              r"Partners|Associates|Bank|Technologies|Technology|Systems|Solutions|Labs|Services|Service|Agency|"
              r"Industries|Enterprises|Consulting|Capital|Ventures|Insurance|University|College|Institute|Foundation)")
# "48 Factoring Inc", "Allstate Insurance Group", "Barnett, Melton and Garcia", "Thomas and Sons",
# "Weber-Santana": the usual written forms of company names.
_ORG = re.compile(
    rf"\b(?:\d+[ \t]+)?(?:{_CAP}[ \t]+){{1,3}}{_ORG_WORDS}\b\.?"
    rf"|\b{_CAP},[ \t]+{_CAP},?[ \t]+(?:and|&)[ \t]+{_CAP}"
    rf"|\b{_CAP}[ \t]+(?:and|&)[ \t]+Sons\b"
)
_HYPHEN_PAIR = re.compile(r"(?<![\w’'-])([A-Z][a-z]+)-([A-Z][a-z]+)(?![\w-])")
_CAP_BEFORE = re.compile(r"[A-ZÀ-Þ][\w'’.-]*[ \t]+$")
_ORG_CUE = re.compile(r"(?i:\b(?:i work (?:for|at)|works? (?:for|at)|worked (?:for|at)|employed (?:by|at)|(?:a year|years?|months?) at|"
                      r"(?:is|am|are|was) from|recorded for|(?:joined|joining))\s+)")
_ORG_NAME = re.compile(rf"{_CAP}(?:[ \t]+(?:{_CAP}|&|and|of))*(?<![ \t])")


def organisations(text: str) -> list[Entity]:
    firsts = first_names()
    out = []
    for m in _ORG.finditer(text):
        words = [w.strip(",.&") for w in m.group().split()]
        # "Kevin, Brittany and Terri" is a list of people, not a firm.
        if "," in m.group() and any(w.upper() in firsts for w in words if w not in ("and", "")):
            continue
        end = m.end() - (1 if m.group().endswith(".") and "," in m.group() else 0)
        out.append(Entity(m.start(), end, "ORGANIZATION", 0.6, "org_form"))
    lasts = last_names()
    for m in _HYPHEN_PAIR.finditer(text):
        # A double-barrelled surname follows a given name; a hyphenated pair standing alone is a firm.
        if m.group(1).upper() in lasts and m.group(2).upper() in lasts and not _CAP_BEFORE.search(text[max(0, m.start() - 30):m.start()]):
            out.append(Entity(m.start(), m.end(), "ORGANIZATION", 0.5, "org_form"))
    for cue in _ORG_CUE.finditer(text):
        m = _ORG_NAME.match(text, cue.end())
        if m and m.group().split()[0].upper() not in first_names():
            out.append(Entity(m.start(), m.end(), "ORGANIZATION", 0.5, "org_after_cue"))
    return out


ALL = (addresses, phones, cards, person_names, places, given_names, organisations)
