"""Technical and business text is full of things shaped like personal data: versions read as IP
addresses or dates, file names and dotted code names read as URLs, order / ticket / SKU / build
numbers read as phone, licence or health-service numbers, code identifiers and sentence-initial
verbs read as names, product names that start with a given name ("Travis CI", "Mac OS").

`suppress` drops such candidates by their shape and their context, after every recognizer ran.
Tiers (the `pii` check's `precision` option):
  recall    nothing is suppressed (every candidate stands);
  balanced  the look-alike rules below (default);
  strict    also: name / place / organisation guesses of the NER model need a proper-noun tag, a
            known name or a cue, and identifier types without a cue word nearby are dropped.
Rules look at the text around a span, never at a list of values from any data set.
"""

from __future__ import annotations

import re
from typing import Literal

from gateway.detectors.views import _vocabulary
from gateway.pii.entities import Entity
from gateway.pii.gazetteer import COUNTRIES, first_names, last_names

Tier = Literal["recall", "balanced", "strict"]

# ---- shapes --------------------------------------------------------------------------------------
_FILE_EXT = frozenset("""
py pyc pyi pyx ipynb js mjs cjs ts tsx jsx json yaml yml toml cfg ini conf env lock txt md rst csv tsv log sql
sh bash zsh ps1 bat cmd rs go rb java kt kts scala c h cc cpp hpp cs fs php pl pm r lua swift m mm dart ex exs
erl hs ml vue svelte html htm css scss less xml xsd svg png jpg jpeg gif bmp ico webp pdf doc docx xls xlsx ppt
pptx odt zip gz tgz bz2 xz tar whl egg jar war deb rpm dmg exe dll so dylib bin dat db sqlite pkl npy npz pt
onnx h5 mp3 mp4 wav mov avi mkv iso img cfg spec patch diff tmpl j2 tpl proto pem crt key cer
""".split())
_SCHEME = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|www\.|mailto:)", re.I)
_CODE_CHARS = re.compile(r"[_/\\=(){}<>\[\]`$@|]")
_DOTTED_LOWER = re.compile(r"\.[a-z]")
_LETTER_DIGIT = re.compile(r"(?=\w*[A-Za-z])(?=\w*\d)\w+")
_VERSION_CUE = re.compile(
    r"(?i:\b(?:v|ver|version|versions|release|released|build|firmware|update|upgrade|upgraded|downgrade|patch|"
    r"python|pip|node|npm|package|library|lib|sdk|api|app|plugin|kernel|driver|release notes|changelog|"
    r"since|from|to|than|<=|>=|==|~=)\b\.?\s*$)")
_VERSION = re.compile(r"^v?\d+(?:\.\d+){1,4}(?:[-+.]?[A-Za-z0-9]+)*\+?$", re.I)
# Words after which a number is an identifier of a thing, not of a person.
_ID_CUE = re.compile(
    r"(?i:\b(?:order|orders|ticket|tickets|invoice|invoices|sku|skus|item|items|part|parts|product|products|"
    r"model|serial|build|builds|version|release|issue|issues|bug|pr|pull request|commit|case|ref|reference|"
    r"tracking|shipment|shipping|parcel|package|batch|lot|job|task|incident|req|pipeline|po|"
    r"purchase order|quote|contract|catalog(?:ue)?|article|asset|device|port|pid|error|errno|room|gate|flight)"
    r"[ \t]*(?:no\.?|number|nr\.?|id|code|#|:|is|was)?[ \t]*[:#]?[ \t]*$)")
_HASH_BEFORE = re.compile(r"[#]\s*$")
# Identifier types that mean nothing without their word: presidio's patterns for these are broad.
_NEEDS_CUE = {
    "US_DRIVER_LICENSE": re.compile(r"(?i:driv|licen[cs]e|\bdl\b|\bd\.l\.|permit)"),
    "US_PASSPORT": re.compile(r"(?i:passport)"),
    "MEDICAL_LICENSE": re.compile(r"(?i:\bdea\b|medical|licen[cs]e|npi)"),
    "US_BANK_NUMBER": re.compile(r"(?i:account|acct|a/c|bank|routing|checking|savings|iban|deposit)"),
    "UK_NHS": re.compile(r"(?i:\bnhs\b|health)"),
    "US_ITIN": re.compile(r"(?i:itin|taxpayer|\btax\b)"),
    "UK_NINO": re.compile(r"(?i:national insurance|\bnino?\b|\bni\b)"),
}
_IDENTIFIER_TYPES = {"PHONE_NUMBER", "UK_NHS", "US_BANK_NUMBER", "US_DRIVER_LICENSE", "US_PASSPORT",
                     "MEDICAL_LICENSE", "US_ITIN", "UK_NINO", "US_SSN", "CREDIT_CARD", "DATE_TIME", "IP_ADDRESS"}
_NER_TYPES = {"PERSON", "ORGANIZATION", "LOCATION", "NRP"}
# After a given name, a token that makes it a product: "Travis CI", "Mac OS", "Alexa 3", "Jenkins pipeline".
_PRODUCT_AFTER = re.compile(
    r"^[ \t]*(?:[A-Z]{2,4}\b(?!\.)|v?\d|(?i:pro|max|mini|plus|air|ultra|edition|app|apps|bot|api|sdk|cli|server|"
    r"pipeline|pipelines|job|jobs|build|builds|plugin|cluster|node|instance|model|framework|library|engine)\b)")
# Name / place / organisation sources that guess from capitalisation alone (not anchored by a cue
# or a street pattern): the ones technical text fools.
_GUESSES = {"SpacyRecognizer", "given_name", "org_form"}
_MONTHS_DAYS = frozenset("""january february march april may june july august september october november december
monday tuesday wednesday thursday friday saturday sunday""".split())


def suppress(text: str, ents: list[Entity], tier: Tier = "balanced", doc=None) -> list[Entity]:
    """`doc`: the spaCy Doc of `text` when the NER model ran (its part-of-speech tags)."""
    if tier == "recall":
        return ents
    return [e for e in ents if not _lookalike(text, e, tier, doc)]


def _lookalike(text: str, e: Entity, tier: Tier, doc) -> bool:
    span = text[e.start:e.end]
    before = text[max(0, e.start - 40):e.start]
    after = text[e.end:e.end + 24]
    if e.source == "custom":
        return False  # what the policy author declared is never second-guessed
    if e.type == "URL":
        return _not_a_url(span, before, after)
    if e.type in _IDENTIFIER_TYPES:
        if e.type in ("IP_ADDRESS", "DATE_TIME") and _is_version(span, before, after):
            return True
        if e.type != "DATE_TIME" and (_ID_CUE.search(before) or _HASH_BEFORE.search(before)) and not _personal_cue(e.type, before):
            return True
    cue = _NEEDS_CUE.get(e.type)
    if cue is not None and not cue.search(text[max(0, e.start - 60):e.end + 20]):
        return True
    if e.type in _NER_TYPES and e.source in _GUESSES:
        return _not_a_name(text, e, span, before, after, tier, doc)
    return False


def _personal_cue(kind: str, before: str) -> bool:
    """"my phone number is", "account number:" - the cue names a personal identifier after all."""
    if kind == "PHONE_NUMBER":
        return bool(re.search(r"(?i:phone|mobile|cell|tel|fax|call|text|whatsapp|contact)\W*(?:\w+\W+){0,3}$", before))
    if kind in ("US_BANK_NUMBER", "CREDIT_CARD", "US_SSN"):
        return bool(re.search(r"(?i:account|acct|card|social security|ssn|bank)\W*(?:\w+\W+){0,3}$", before))
    return False


def _not_a_url(span: str, before: str, after: str) -> bool:
    if _SCHEME.match(span):
        return False
    host = span.split("/")[0].split(":")[0].rstrip(".")
    tld = host.rsplit(".", 1)[-1].lower() if "." in host else ""
    if not tld or tld in _FILE_EXT:
        return True  # setup.py, CHANGES.txt, config.yaml
    if (before and (before[-1].isalnum() or before[-1] in "._-/\\`'\"")) or (after and (after[0].isalnum() or after[0] in "(_`")):
        return True  # cut out of a longer token (importlib.metadata, str.format()), a path or a code span
    labels = host.split(".")
    if tld not in _COMMON_TLDS or any(re.search(r"[a-z][A-Z]", x) or (x.isupper() and len(x) > 1) for x in labels):
        return True  # InstallCommand.run, MANIFEST.in, pip.download: code and files, not addresses
    if any("_" in x for x in labels) or (len(labels) >= 2 and all(x.islower() for x in labels) and labels[0] in _CODE_OBJECTS):
        return True  # os.path, self.session, my_module.func
    return False


# Generic TLDs people write without a scheme, plus every two-letter country code.
_COMMON_TLDS = frozenset("com net org edu gov mil int info biz io co ai app dev me tv cc ly gg sh xyz online site "
                         "store shop tech cloud blog news page".split()) | frozenset(
    a + b for a in "abcdefghijklmnopqrstuvwxyz" for b in "abcdefghijklmnopqrstuvwxyz")
_CODE_OBJECTS = frozenset("self cls os sys str int dict list np pd re json math time datetime path request requests "
                          "response session args kwargs config settings app obj this super window document".split())


def _is_version(span: str, before: str, after: str) -> bool:
    s = span.strip()
    if not _VERSION.match(s):
        return False
    if _VERSION_CUE.search(before) or s.lower().startswith("v") or after.startswith(("+", "-rc", "-beta", "-alpha", "rc", "b", "a")):
        return True
    parts = re.findall(r"\d+", s)
    if "." in s and not any(len(p) == 4 for p in parts) and any(len(p) == 1 for p in parts[:2]) :
        return True  # 2.8.0, 3.10.1: a date with dots writes two-digit days and months or a 4-digit year
    if len(parts) >= 4 and all(len(p) <= 2 for p in parts):
        return True  # 1.0.0.12 - four short parts: a build number, not an address in use
    return False


def _not_a_name(text: str, e: Entity, span: str, before: str, after: str, tier: Tier, doc) -> bool:
    words = span.split()
    if not words:
        return True
    if (span[0].isalnum() and before[-1:].isalnum()) or (span[-1].isalnum() and after[:1].isalnum()):
        return True  # a guess that cuts a word in two is a broken match
    if before.endswith("`") or _CODE_CHARS.search(span) or _DOTTED_LOWER.search(span):
        return True  # code: `Response.url`, no_proxy, CHANGES.txt, setup_tools
    if any(_LETTER_DIGIT.fullmatch(w.strip(".,;:!?'\"")) for w in words) and e.type != "ORGANIZATION":
        return True  # urllib3, py3, x86
    if e.type in ("PERSON", "LOCATION", "NRP") and any(ch.isdigit() for ch in span):
        return True  # "Python 2.7"
    if span.islower() and not _known(words, e.type):
        return True  # spaCy's lower-case guesses in technical text: extras, scripttest, changelog
    if e.type == "PERSON":
        if words[0].lower().strip(".,") in _MONTHS_DAYS and len(words) == 1:
            return True
        if _PRODUCT_AFTER.match(after) and len(words) == 1:
            return True  # "Travis CI", "Mac OS", "Alexa 3"
        last = words[-1].strip(".,")
        if len(words) > 1 and last.isupper() and 2 <= len(last) <= 4 and not re.fullmatch(r"[IVX]+|JR|SR", last):
            return True  # the same, when the model took the product suffix into the name
    if e.source == "SpacyRecognizer" and doc is not None and not _has_proper_noun(doc, e) and not _known(words, e.type):
        # The tagger says no word of the span is a proper noun, and each is an everyday word:
        # "Require" (verb), "Wheels" (noun). A rare word the tagger cannot place ("Matthíasson",
        # "Gondregnies") stays: rare capitalised words in personal text are mostly names.
        if tier == "strict" or all(w.strip(".,;:!?'\"").lower() in _vocabulary() for w in words):
            return True
    if tier == "strict" and e.source == "SpacyRecognizer" and len(words) == 1 and not _known(words, e.type):
        return True
    return False


def _known(words: list[str], kind: str) -> bool:
    """A word list says this is a name or a place: census first / last names, countries."""
    first = words[0].strip(".,'\"").upper()
    if kind == "PERSON":
        return first in first_names() or words[-1].strip(".,'\"").upper() in last_names()
    if kind == "LOCATION":
        return " ".join(words).lower().strip(".,") in COUNTRIES
    return False


def _has_proper_noun(doc, e: Entity) -> bool:
    span = doc.char_span(e.start, e.end, alignment_mode="expand")
    if span is None:
        return True  # cannot tell: keep
    return any(t.pos_ == "PROPN" for t in span)
