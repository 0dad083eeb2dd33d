"""Raw label reasons -> the paper's 11 bad-exposure categories, by an ordered list of rules in TOML.

``configs/categories.toml`` holds ``[[rule]]`` tables; the first rule whose conditions all hold decides a
record's category. Conditions (all optional, all must hold):

- ``source``: a source name or a list of them (see :data:`ingest.labels.formats.SOURCES`);
- ``level``: ``"exposure"`` or ``"ccd"``;
- ``flag``: an integer or a list of integers; a record without a flag never matches;
- ``reason``: a regular expression searched (case-insensitively) in the record's ``raw_reason``;
- ``quantity`` + ``below``: a regular expression naming a number in the reason and a bound; holds when the
  reason states that number and it is below the bound. ``expfactor=0.4`` and ``exp factor < 0.5`` hold for
  ``below = 1``, ``expfactor=1.2`` and ``expfactor > 0.5`` do not;

and ``category`` is one of :data:`CATEGORIES` or ``"ignore"`` (a reason deliberately not used as a label);
``note`` is free text for the reader. A record no rule matches is *unmapped*: :func:`unmapped_reasons` lists
those so that nothing is dropped silently.
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ingest.labels.common import LEVELS, SOURCES, LabelRecord
from vecstore.config import config_file
from vecstore.errors import ConfigError
from vecstore.vocabulary import CATEGORIES

IGNORE = "ignore"

DEFAULT_RULES_PATH = config_file("categories.toml")

_RULE_KEYS = ("source", "level", "flag", "reason", "quantity", "below", "category", "note")
_TOP_LEVEL_KEYS = ("rule",)

# What may stand between a quantity's name and its value: "=", ":", "<", "<<", "<=", or nothing.
_COMPARATOR = r"\s*(?P<op><<|<=|<|=|:|>=|>)?\s*(?P<value>[0-9]*\.?[0-9]+)"


@dataclass(frozen=True)
class Rule:
    """One ``[[rule]]`` of the TOML file; ``number`` is its 1-based position, for messages."""

    number: int
    category: str
    sources: frozenset[str] | None = None
    level: str | None = None
    flags: frozenset[int] | None = None
    reason: re.Pattern[str] | None = None
    quantity: re.Pattern[str] | None = None
    below: float | None = None
    note: str = ""

    def matches(self, record: LabelRecord) -> bool:
        if self.sources is not None and record.source not in self.sources:
            return False
        if self.level is not None and record.level != self.level:
            return False
        if self.flags is not None and record.flag not in self.flags:
            return False
        if self.reason is not None and self.reason.search(record.raw_reason) is None:
            return False
        return self.quantity is None or _states_value_below(self.quantity, self.below, record.raw_reason)


def _states_value_below(quantity: re.Pattern[str], bound: float, text: str) -> bool:
    """Whether ``text`` says the named quantity is below ``bound`` (first mention decides).

    ``name = v`` / ``name: v`` / ``name v``: v < bound. ``name < v`` / ``name << v``: the value is under v,
    so under ``bound`` whenever v <= bound; ``name <= v``: whenever v < bound. ``>``/``>=`` say nothing about
    being below, so they do not hold.
    """
    match = quantity.search(text)
    if match is None:
        return False
    op, value = match["op"], float(match["value"])
    if op in (None, "=", ":"):
        return value < bound
    if op in ("<", "<<"):
        return value <= bound
    if op == "<=":
        return value < bound
    return False


@dataclass(frozen=True)
class CategoryRules:
    """The ordered rules of one TOML file."""

    rules: tuple[Rule, ...]
    path: Path

    @classmethod
    def load(cls, path: str | Path | None = None) -> CategoryRules:
        """Rules from ``path`` (default: the project's configs/categories.toml); ConfigError if invalid."""
        path = Path(path) if path is not None else DEFAULT_RULES_PATH
        document = _read_toml(path)
        unknown = sorted(set(document) - set(_TOP_LEVEL_KEYS))
        if unknown:
            raise ConfigError(f"{path}: unknown key {unknown[0]!r} (only [[rule]] tables are allowed)")
        tables = document.get("rule", [])
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise ConfigError(f"{path}: 'rule' must be an array of tables ([[rule]])")
        rules = tuple(_parse_rule(path, number, table) for number, table in enumerate(tables, start=1))
        return cls(rules, path)

    def rule_for(self, record: LabelRecord) -> Rule | None:
        """The first rule matching the record, None when none does."""
        for rule in self.rules:
            if rule.matches(record):
                return rule
        return None

    def categorize(self, record: LabelRecord) -> str | None:
        """A category from :data:`CATEGORIES`, ``"ignore"``, or None when no rule matches (unmapped)."""
        rule = self.rule_for(record)
        return None if rule is None else rule.category


def unmapped_reasons(records: Iterable[LabelRecord], rules: CategoryRules) -> list[tuple[str, str, int]]:
    """``(source, raw_reason, count)`` of every reason no rule maps, most frequent first."""
    counts = Counter((r.source, r.raw_reason) for r in records if rules.categorize(r) is None)
    return [(source, reason, n) for (source, reason), n in _most_common(counts)]


def mapping_table(
    records: Iterable[LabelRecord], rules: CategoryRules
) -> list[tuple[str, str, str | None, int]]:
    """``(source, reason pattern, category, count)`` over records, to review what the rules do.

    Numbers in reasons are shown as ``N`` and bad_expid flags as a ``[flag N]`` prefix, so the thousands of
    ``expfactor=0.208  seeing=1.400`` lines collapse into one row per wording; a pattern whose records went
    to different categories (``expfactor=N`` below and above 1) gets one row per category.
    """
    counts = Counter((r.source, reason_pattern(r), rules.categorize(r)) for r in records)
    return [(source, pattern, category, n) for (source, pattern, category), n in _most_common(counts)]


def reason_pattern(record: LabelRecord) -> str:
    """The record's reason with numbers as ``N`` (and its flag as a prefix), for grouping similar wordings."""
    text = re.sub(r"\d+(\.\d+)?", "N", record.raw_reason)
    flag = f"[flag {record.flag}] " if record.flag is not None and record.source == "decals-badexp" else ""
    return f"{flag}{text}" if text or flag else "(no reason)"


def _most_common(counts: Counter) -> list:
    return sorted(counts.items(), key=lambda item: (-item[1], tuple(str(part) for part in item[0])))


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: category rules file does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read category rules ({exc.strerror or exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc


def _parse_rule(path: Path, number: int, table: dict) -> Rule:
    where = f"{path}: rule {number}"
    unknown = [key for key in table if key not in _RULE_KEYS]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(_RULE_KEYS)}")
    if "category" not in table:
        raise ConfigError(f"{where}: missing key 'category'")
    if ("quantity" in table) != ("below" in table):
        raise ConfigError(f"{where}: keys 'quantity' and 'below' go together")
    return Rule(
        number=number,
        category=_category(where, table["category"]),
        sources=_sources(where, table.get("source")),
        level=_level(where, table.get("level")),
        flags=_flags(where, table.get("flag")),
        reason=_regex(where, "reason", table.get("reason")),
        quantity=_quantity(where, table.get("quantity")),
        below=_below(where, table.get("below")),
        note=_text(where, "note", table.get("note", "")),
    )


def _category(where: str, value) -> str:
    if value != IGNORE and value not in CATEGORIES:
        raise ConfigError(
            f"{where}: unknown category {value!r} in key 'category'; "
            f"expected one of {', '.join(CATEGORIES)} or {IGNORE!r}"
        )
    return value


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _sources(where: str, value) -> frozenset[str] | None:
    if value is None:
        return None
    for source in _as_list(value):
        if source not in SOURCES:
            raise ConfigError(
                f"{where}: unknown source {source!r} in key 'source'; expected {', '.join(SOURCES)}"
            )
    return frozenset(_as_list(value))


def _level(where: str, value) -> str | None:
    if value is not None and value not in LEVELS:
        raise ConfigError(f"{where}: key 'level' must be 'exposure' or 'ccd', not {value!r}")
    return value


def _flags(where: str, value) -> frozenset[int] | None:
    if value is None:
        return None
    flags = _as_list(value)
    if not all(isinstance(f, int) and not isinstance(f, bool) for f in flags):
        raise ConfigError(f"{where}: key 'flag' must be an integer or a list of integers, not {value!r}")
    return frozenset(flags)


def _regex(where: str, key: str, value) -> re.Pattern[str] | None:
    if value is None:
        return None
    _text(where, key, value)
    try:
        return re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(f"{where}: key {key!r} is not a valid regular expression ({exc})") from exc


def _quantity(where: str, value) -> re.Pattern[str] | None:
    if value is None:
        return None
    name = _regex(where, "quantity", value)
    return re.compile(f"(?:{name.pattern}){_COMPARATOR}", re.IGNORECASE)


def _below(where: str, value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: key 'below' must be a number, not {value!r}")
    return float(value)


def _text(where: str, key: str, value) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: key {key!r} must be a string, not {value!r}")
    return value
