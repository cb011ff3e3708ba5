"""The family's names (the family, its pivot and target languages), apart from the training code so that what only
needs the names (the reference grid, the scenario set, the site) does not import torch."""

from __future__ import annotations

from ..corpus import LANGUAGES

FAMILY = "babel-mini"
PIVOT = "en"
TARGETS = tuple(l for l in LANGUAGES if l != PIVOT)
