"""Word lists the recognizers share: street vocabulary (USPS Publication 28 suffixes plus common
non-English street words), countries, first and last names (US census lists, via the `names` package).

Lists are general resources, not fitted to any evaluation set; they load once per process.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

# USPS Publication 28 street suffixes (full words and standard abbreviations), English only.
STREET_SUFFIXES = frozenset("""
alley aly annex anx arcade arc avenue ave av bayou byu beach bch bend bnd bluff blf bluffs blfs bottom btm
boulevard blvd branch br bridge brg brook brk brooks burg bg burgs bypass byp camp cp canyon cyn cape cpe
causeway cswy center ctr centre centers circle cir circles cliff clf cliffs clfs club clb common cmn commons
corner cor corners cors course crse court ct courts cts cove cv coves cvs creek crk crescent cres crest crst
crossing xing crossroad curve dale dl dam dm divide dv drive dr drives drs estate est estates ests expressway
expy extension ext falls fls ferry fry field fld fields flds flat flt flats flts ford frd fords forest frst
forge frg forges frgs fork frk forks frks fort ft freeway fwy garden gdn gardens gdns gateway gtwy glen gln
glens green grn greens grove grv groves harbor hbr harbour harbors haven hvn heights hts highway hwy hill hl
hills hls hollow holw inlet inlt island is islands iss isle junction jct junctions key ky keys knoll knl
knolls lake lk lakes lks landing lndg lane ln light lgt lights loaf lf lock lck locks lodge ldg loop mall
manor mnr manors meadow mdw meadows mdws mews mill ml mills mission msn motorway mtwy mount mt mountain mtn
mountains neck nck orchard orch oval overpass opas park parks parkway pkwy parkways pass passage psge path
pike pine pne pines place pl plain pln plains plns plaza plz point pt points pts port prt ports prts prairie
pr radial radl ramp ranch rnch rapid rpd rapids rpds rest rst ridge rdg ridges river riv road rd roads rds
route rte row rue run shoal shl shoals shore shr shores skyway spring spg springs spgs spur square sq squares
station sta stravenue stra stream strm street st streets summit smt terrace ter throughway trwy trace trce
track trak trafficway trfy trail trl trailer tunnel tunl turnpike tpke underpass upas union un valley vly
valleys viaduct via view vw views village vlg villages ville vl vista vis walk walks wall way ways well wells
close grange wynd quay
""".split())

# Words that open a street name in other languages ("Rua do Arenque", "ul. Zamkowa", "Via Roma").
STREET_PREFIXES = frozenset("""
rue rua rúa via viale vicolo corso piazza piazzale calle avenida av avda avenue allée allee chemin impasse
boulevard bd carrer rambla paseo praça praca largo travessa estrada rodovia ul ulica al aleja plac os
strada str ulitsa prospekt
""".split())

# Endings of compound street names in Germanic, Nordic, Dutch and Finnish ("Strickstrasse", "Mellemstræde").
STREET_ENDINGS = (
    "straße", "strasse", "str.", "gasse", "weg", "allee", "platz", "ring", "damm", "ufer", "steig", "pfad",
    "vej", "vænget", "gade", "stræde", "allé", "veien", "vegen", "vei", "veg", "gata", "gatan", "gränd",
    "vägen", "väg", "stigen", "katu", "tie", "kuja", "polku", "raitti", "braut", "gata", "stígur", "vegur",
    "tröð", "laan", "straat", "gracht", "plein", "dreef", "kade", "singel", "utca", "ulice", "cesta",
)

UNIT_WORDS = r"(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|Room|Rm|Box|Bldg|Building|Dept)"

COUNTRIES = frozenset(s.strip().lower() for s in """
Afghanistan, Albania, Algeria, Andorra, Angola, Argentina, Armenia, Australia, Austria, Azerbaijan, Bahamas,
Bahrain, Bangladesh, Barbados, Belarus, Belgium, Belize, Benin, Bhutan, Bolivia, Bosnia and Herzegovina,
Botswana, Brazil, Brunei, Bulgaria, Burkina Faso, Burundi, Cambodia, Cameroon, Canada, Cape Verde, Chad, Chile,
China, Colombia, Comoros, Congo, Costa Rica, Croatia, Cuba, Cyprus, Czech Republic, Czechia, Denmark, Djibouti,
Dominica, Dominican Republic, Ecuador, Egypt, El Salvador, Eritrea, Estonia, Eswatini, Ethiopia, Fiji, Finland,
France, Gabon, Gambia, Georgia, Germany, Ghana, Greece, Grenada, Guatemala, Guinea, Guyana, Haiti, Honduras,
Hong Kong, Hungary, Iceland, India, Indonesia, Iran, Iraq, Ireland, Israel, Italy, Ivory Coast, Jamaica, Japan,
Jordan, Kazakhstan, Kenya, Kiribati, Korea, South Korea, North Korea, Kosovo, Kuwait, Kyrgyzstan, Laos, Latvia,
Lebanon, Lesotho, Liberia, Libya, Liechtenstein, Lithuania, Luxembourg, Madagascar, Malawi, Malaysia, Maldives,
Mali, Malta, Mauritania, Mauritius, Mexico, Moldova, Monaco, Mongolia, Montenegro, Morocco, Mozambique, Myanmar,
Namibia, Nauru, Nepal, Netherlands, the Netherlands, New Zealand, Nicaragua, Niger, Nigeria, North Macedonia,
Norway, Oman, Pakistan, Palau, Palestine, Panama, Papua New Guinea, Paraguay, Peru, Philippines, Poland,
Portugal, Qatar, Romania, Russia, Rwanda, Samoa, San Marino, Saudi Arabia, Senegal, Serbia, Seychelles,
Sierra Leone, Singapore, Slovakia, Slovenia, Somalia, South Africa, South Sudan, Spain, Sri Lanka, Sudan,
Suriname, Sweden, Switzerland, Syria, Taiwan, Tajikistan, Tanzania, Thailand, Togo, Tonga, Trinidad and Tobago,
Tunisia, Turkey, Türkiye, Turkmenistan, Uganda, Ukraine, United Arab Emirates, UAE, United Kingdom, UK,
Great Britain, England, Scotland, Wales, United States, United States of America, USA, U.S.A., Uruguay,
Uzbekistan, Vanuatu, Vatican City, Venezuela, Vietnam, Yemen, Zambia, Zimbabwe, Puerto Rico, Greenland
""".split(","))

# Words that name a person's role rather than an organisation, before a capitalised name.
PERSON_TITLES = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Madam|Mme|Mlle|Herr|Frau|Sr|Sra|Srta)"

# Endings that mark a name as an organisation.
ORG_ENDINGS = frozenset("""
inc inc. llc ltd ltd. plc gmbh ag sa s.a. corp corp. corporation company co co. group holdings partners
associates bank university college institute foundation technologies systems solutions labs
""".split())


def _names_dir() -> Path | None:
    spec = importlib.util.find_spec("names")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


@functools.cache
def first_names() -> frozenset[str]:
    """Upper-cased given names (US census via `names`); empty if that package is absent."""
    folder = _names_dir()
    if folder is None:
        return frozenset()
    out: set[str] = set()
    for fname in ("dist.female.first", "dist.male.first"):
        path = folder / fname
        if path.exists():
            out.update(line.split(None, 1)[0] for line in path.read_text().splitlines() if line.strip())
    return frozenset(out)


@functools.cache
def last_names() -> frozenset[str]:
    """The most common US surnames (the top of the census list; the long tail holds ordinary words)."""
    folder = _names_dir()
    path = folder / "dist.all.last" if folder else None
    if path is None or not path.exists():
        return frozenset()
    rows = path.read_text().splitlines()[:20000]
    return frozenset(line.split(None, 1)[0] for line in rows if line.strip())
