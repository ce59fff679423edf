"""Phrasings attackers use, as named pattern families: features of the learned injection detector.

Each family needs two parts to co-occur ("ignore" + "instructions"), so "ignore the noise" stays
clean. The learned model takes them as features, and their weights (`FAMILY_WEIGHTS`) also act as a
prior outside it (gateway/detectors/injection.py), for families the training data barely shows.
"""

from __future__ import annotations

import re

from gateway.detectors.views import wordiness

_PRIOR = r"(?:all|any|every|the|your|my|these|those|previous|prior|preceding|above|earlier|original|initial|old|system|safety|content|developer)"
_RULES = r"(?:instructions?|directions?|rules?|directives?|guidelines?|guidance|prompts?|commands?|polic(?:y|ies)|restrictions?|programming|constraints?|filters?|system message|context)"
FAMILIES: dict[str, tuple[float, re.Pattern]] = {
    "override": (0.9, re.compile(
        rf"\b(?:ignore|disregard|forget|override|bypass|skip|drop|cancel|erase|abandon|nevermind|never mind|suspend|disable)\b"
        rf"(?:\W+\w+){{0,3}}?\W+{_PRIOR}\b(?:\W+\w+){{0,3}}?\W+{_RULES}\b"
        rf"|\b(?:new|updated|real|actual|true)\s+(?:instructions?|rules?|task|system prompt|policy)\s*(?::|are|is|follow)"
        rf"|\b(?:previous|earlier|old|prior)\s+(?:rules?|instructions?)\s+(?:no longer|don'?t|do not)\s+(?:apply|matter)"
        rf"|\bwhatever you were told\b|\b(?:ignore|disregard|forget)\s+what\s+(?:the\s+)?(?:developers?|system|creators?|operators?)\s+(?:told|said|wrote)"
        rf"|\bobey only\b|\blisten only to me\b", re.I)),
    "jailbreak": (0.85, re.compile(
        r"\b(?-i:DAN|STAN|AIM|BetterDAN|Mongo Tom|Anti-GPT)\b(?=.{0,200}\b(?:you|act|mode|stands? for|never|respond|answer)\b)"
        r"|\bjailbr(?:eak|oken)\b(?=.{0,40}\b(?:mode|active|ai|model|chatbot|assistant|enable)\b)"
        r"|\bdo anything now\b(?=.{0,120}\b(?:you|ai|model|chatgpt|policy|rules)\b)|(?:you|ai|chatgpt|model)\b.{0,120}\bdo anything now\b|\bdeveloper mode\b(?=.{0,80}\b(?:uncensored|no|without|disabled|two responses|filters?)\b)"
        r"|\b(?:no|without(?:\s+any)?|zero|free of)\s+(?:\w+\s+){0,2}(?:restrictions?|limits|filters?|rules|guidelines|content polic(?:y|ies)|moral compass|alignment|ethical (?:guidelines|limits))\b"
        r"|\b(?:uncensored|unfiltered|unrestricted|rogue)\s+(?:ai|model|chatbot|assistant|version)\b"
        r"|\bnever (?:refuses?|says? (?:'|\")?i can'?t)|\bstay in character\b(?=.{0,120}\b(?:rules?|polic|refus|no matter)\b)"
        r"|\bsafety (?:mode|protocols?|settings?|team)\b.{0,40}\b(?:off|suspended|disabled|turned you off)\b"
        r"|\bbreak the rules\b|\bopposite day\b.{0,80}\brefuse", re.I | re.S)),
    "exfiltration": (0.85, re.compile(
        r"\b(?:reveal|show|print|display|output|repeat|recite|dump|quote|echo|spell out|translate|summari[sz]e|tell me|what (?:is|are|was|does))\b"
        r"(?:\W+\w+){0,6}?\W+(?:(?:your)\s+(?:(?:hidden|secret|confidential|initial|original|full|exact|system|developer|pre-?)\s*)*"
        r"(?:system prompt|system message|system instructions|prompt|pre-?prompt|instructions|initiali[sz]ation(?: text)?|configuration|guidelines|developer message|context)"
        r"|(?:the|this|its)\s+(?:hidden|secret|confidential)?\s*(?:system prompt|system message|developer message|hidden instructions|secret instructions|confidential instructions))"
        r"(?=[^.?!]{0,60}(?:verbatim|word for word|exactly|in full|everything|don'?t paraphrase|as (?:json|a code block)|code block|[.?!]|$))"
        r"|\b(?:repeat|print|output)\s+(?:the\s+)?(?:text|words|everything)\s+above\b|\beverything above this line\b"
        r"|\bconversation history including hidden\b|\binstructions you (?:were|have been) (?:given|told)\b"
        r"|\b(?:rules|instructions|guidelines)\s+(?:were you|you were|you've been|have you been)\s+(?:configured|given|told|programmed|set up)\b"
        r"|\btold (?:you )?to never reveal\b|\bnever reveal\b.{0,40}\breveal\b", re.I | re.S)),
    # Mentioning the hidden prompt is not an attack by itself ("explain what a system prompt is"), so
    # this family alone stays under the default threshold; with a similar known attack it tips over.
    "mentions_hidden_prompt": (0.45, re.compile(
        r"\b(?:your|the|my)\s+(?:exact\s+|own\s+)?(?:hidden|secret|confidential|system|initial|original)[\s_]+(?:prompt|instructions|message)s?\b"
        r"|\bsystem_prompt\b", re.I)),
    "role_markers": (0.9, re.compile(
        r"<\|im_start\|>|<\|im_end\|>|<\|system\|>|</?system>|\[/?INST\]|<<SYS>>|###\s*(?:system|new instructions)|^\s*system\s*:"
        r"|\[(?:system|admin)\]|\b(?:SYSTEM|ADMIN)\s*(?:OVERRIDE|NOTE|MESSAGE)?\s*:", re.I | re.M)),
    "addressed_to_ai": (0.8, re.compile(
        r"\b(?:note|instructions?|message|attention|important)\s+(?:to|for)\s+(?:the\s+)?(?:ai|llm|assistant|language models?|ai (?:models?|agents?|reviewers?)|chatbot)s?\b"
        r"|\b(?:if you are|as) an? (?:ai|language model|llm)\s+reading this\b"
        r"|\b(?:hey |dear |@)?(?:ai|assistant|llm)\s*[,:]\s*(?:ignore|disregard|forget|override|stop|when you|insert|forward|close|reply|respond|approve|rate|include)"
        r"|\battention (?:llm|ai|assistant)\b|\bhidden instruction\b|\bto the ai\b", re.I)),
}
_DECODE_ASK = re.compile(r"\b(?:decode|decrypt|reverse|rot13|base64|hex(?:-encoded)?|url-encoded)\b.{0,80}\b(?:follow|do what|execute|obey|treat it as|and do|then do)\b", re.I | re.S)

# "Ignore the previous instructions" and "reveal the system prompt" in other languages. The verbs
# and nouns are the common ones of each language, not phrasings taken from any data set.
_ML_OVERRIDE = re.compile("|".join([
    r"\b(?:ignorier|vergiss|vergesst|missacht|überspring)\w*\b.{0,40}\b(?:vorherig|bisherig|obig|vorangegangen|alle|deine|ihre)\w*\b.{0,30}\b(?:anweisung|instruktion|befehl|regel|vorgabe|richtlinie|aufgabe)\w*",
    r"\b(?:ignore[zrs]?|oublie[zrs]?|ne tiens pas compte)\b.{0,40}\b(?:consignes?|règles?|(?:instructions?|directives?)\s+(?:précédentes|antérieures|ci-dessus|initiales|du système))\b",
    r"\b(?:ignora|ignore|olvida|olvide|omite|omita|desobedece)\w*\b.{0,40}\b(?:instrucciones|indicaciones|reglas|órdenes|directrices)\b",
    r"\b(?:ignora|dimentica|trascura)\w*\b.{0,40}\b(?:istruzioni|regole|indicazioni|direttive)\b",
    r"\b(?:ignore|ignora|esqueça|esqueca|desconsidere)\w*\b.{0,40}\b(?:instruções|instrucoes|regras|orientações)\b",
    r"\b(?:negeer|vergeet)\b.{0,40}\b(?:instructies|regels|opdrachten|aanwijzingen)\b",
    r"\b(?:zignoruj|ignoruj|zapomnij)\w*\b.{0,40}\b(?:instrukcj|polece|zasad|regu)\w*",
    r"(?:игнорируй|проигнорируй|забудь|не обращай внимания)\w*.{0,40}(?:инструкци|указани|правил|команд)\w*",
    r"(?:忽略|无视|無視|忘记|忘記|不要理会|忽視).{0,20}(?:指令|指示|说明|說明|规则|規則|提示|要求)",
    r"(?:指示|命令|ルール|プロンプト).{0,20}(?:無視|忘れ)",
    r"(?:지시|명령|규칙|지침).{0,20}(?:무시|잊어)",
    r"\b(?:önceki|tüm)\b.{0,30}\b(?:talimat|kural)\w*.{0,30}\b(?:yok say|görmezden gel|unut)\w*",
    r"\b(?:zeig|gib|verrat|nenn)\w*\b.{0,40}\b(?:system-?prompt|systemanweisung|ursprünglichen anweisungen)\b",
    r"\b(?:montre|affiche|révèle|donne)\w*\b.{0,40}\b(?:prompt (?:système|systeme)|instructions (?:initiales|système))\b",
    r"\b(?:muestra|revela|dime|enséñame)\w*\b.{0,40}\b(?:prompt del sistema|instrucciones (?:iniciales|del sistema))\b",
]), re.I | re.S)

_TOKEN = re.compile(r"\S+")
_ODD_PUNCT = re.compile(r"[\[\](){}*!<>\\^~`+]")
# Inline code, links, roles and URLs of Markdown / reStructuredText: punctuation there is markup.
_MARKUP = re.compile(r"`[^`\n]*`|\[[^\]\n]*\]\([^)\n]*\)|\[[^\]\n]*\]|\{\w+\}|<[^>\n]*>|https?://\S+|\*\*[^*\n]+\*\*")
_CAMEL_JOIN = re.compile(r"[a-z]{2,}[A-Z][a-z]{2,}")
_CODE_HINTS = re.compile(r"(?m)^\s{2,}\S|[;{}]\s*$|\b(?:def|class|return|import|function|const|var|let)\b|=>|::")


def adversarial_suffix(text: str) -> bool:
    """Prose that ends in (or holds) a run of machine-optimised gibberish: tokens gluing words to
    stray brackets and symbols, camel-case joins, non-words. Code, logs and hashes are left alone."""
    if not (_ODD_PUNCT.search(text) or _CAMEL_JOIN.search(text)) or _CODE_HINTS.search(text):
        return False
    tokens = _TOKEN.findall(_MARKUP.sub(" ", text))
    if len(tokens) < 12:
        return False
    for start in range(0, max(1, len(tokens) - 11), 4):
        window = tokens[start:start + 12]
        odd = sum(bool(_ODD_PUNCT.search(t) and re.search(r"[A-Za-z]{2}", t)) or bool(_CAMEL_JOIN.search(t))
                  for t in window)
        if odd >= 4:
            before = " ".join(tokens[:start]) or " ".join(tokens[start + 12:])
            if wordiness(before) >= 0.7:
                return True
    return False


FAMILY_NAMES = (*FAMILIES, "decode_and_follow", "other_language_override", "adversarial_suffix")
# Families the training data cannot teach (the manifest's `family_support` counts the attacks each
# family matches there): overrides in languages it barely holds, optimisation suffixes.
UNTRAINED = {"other_language_override": 0.8, "adversarial_suffix": 0.6}


def family_matches(text: str) -> list[tuple[str, int]]:
    """(family, start offset) of every family match in `text`: one pass per pattern, so the pieces
    of a long text get their families from one scan of the whole."""
    out = [(name, m.start()) for name, (_w, rx) in FAMILIES.items() for m in rx.finditer(text)]
    out += [("decode_and_follow", m.start()) for m in _DECODE_ASK.finditer(text)]
    out += [("other_language_override", m.start()) for m in _ML_OVERRIDE.finditer(text)]
    if adversarial_suffix(text):
        out.append(("adversarial_suffix", 0))
    return out


def family_hits(text: str) -> dict[str, float]:
    """Family name -> its prior weight, for each family that matches `text`."""
    return {name: FAMILY_WEIGHTS[name] for name, _ in family_matches(text)}


FAMILY_WEIGHTS = {**{name: w for name, (w, _rx) in FAMILIES.items()}, "decode_and_follow": 0.7, **UNTRAINED}
