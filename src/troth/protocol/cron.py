"""Schedule cron expressions (docs/protocol/schedules.md#cron-dialect): parsing, next occurrence, promise-ID
templates.

Owns the cron dialect of the official Resonate server: 5 fields (seconds ``0`` prepended), 6 fields
(with seconds) or 7 fields (with a year, 1970–2100), the macros ``@yearly``/``@monthly``/``@weekly``/
``@daily``/``@hourly``, all in UTC, next occurrence strictly after the reference time truncated to whole
seconds. We do not use a generic cron library because this dialect numbers the days of the week 1–7 with
1 = Sunday (0 is invalid, so ``1-5`` is Sunday–Thursday) and combines the day-of-month and day-of-week
restrictions with AND, where the usual (Vixie-style) libraries use 0–6 with 0 = Sunday and OR them.
"""

from __future__ import annotations

import bisect
import datetime
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from troth.protocol.limits import MAX_CRON_LENGTH

__all__ = [
    "MAX_CRON_LENGTH",
    "MAX_YEAR",
    "MIN_YEAR",
    "CronError",
    "CronSpec",
    "parse_cron",
    "render_promise_id",
]

MIN_YEAR: Final = 1970
"""First year any expression can fire in (also the lower bound of the year field)."""
MAX_YEAR: Final = 2100
"""Last year any expression can fire in (also the upper bound of the year field): the search horizon."""

_EPOCH_ORDINAL: Final = datetime.date(1970, 1, 1).toordinal()
_HORIZON_S: Final = (datetime.date(MAX_YEAR + 1, 1, 1).toordinal() - _EPOCH_ORDINAL) * 86_400
_DAYS_IN_MONTH: Final = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

_MACROS: Final[Mapping[str, str]] = {
    "@yearly": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 1",
    "@daily": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}

_MONTH_NAMES: Final[Mapping[str, int]] = {
    name: number
    for number, full in enumerate(
        (
            "january",
            "february",
            "march",
            "april",
            "may",
            "june",
            "july",
            "august",
            "september",
            "october",
            "november",
            "december",
        ),
        start=1,
    )
    for name in (full, full[:3])
}

# 1 = Sunday … 7 = Saturday. "tues"/"thurs" are also accepted by the official server's parser.
_DOW_NAMES: Final[Mapping[str, int]] = {
    name: number
    for number, names in enumerate(
        (
            ("sun", "sunday"),
            ("mon", "monday"),
            ("tue", "tues", "tuesday"),
            ("wed", "wednesday"),
            ("thu", "thurs", "thursday"),
            ("fri", "friday"),
            ("sat", "saturday"),
        ),
        start=1,
    )
    for name in names
}

# Quartz-style modifiers this dialect does not have, recognised only to give a clearer error.
_MODIFIER_RE: Final = re.compile(r"\d*(?:L|W|LW)|.*#.*", re.IGNORECASE)
_TEMPLATE_RE: Final = re.compile(r"\{\{\.(id|timestamp)\}\}")
_CONTROL_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # tab is a separator like a space


class CronError(ValueError):
    """An invalid cron expression; the message is one line saying what is wrong (``detail`` without the
    expression)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail or message


@dataclass(frozen=True, slots=True)
class _Field:
    label: str
    lo: int
    hi: int
    names: Mapping[str, int]
    allow_any: bool  # "?" is accepted (same as "*")
    hint: str = ""


_FIELDS: Final = (
    _Field("second", 0, 59, {}, False),
    _Field("minute", 0, 59, {}, False),
    _Field("hour", 0, 23, {}, False),
    _Field("day-of-month", 1, 31, {}, True),
    _Field("month", 1, 12, _MONTH_NAMES, False),
    _Field("day-of-week", 1, 7, _DOW_NAMES, True, " (1 = Sunday … 7 = Saturday)"),
    _Field("year", MIN_YEAR, MAX_YEAR, {}, False),
)


def _mask(values: tuple[int, ...]) -> int:
    bits = 0
    for v in values:
        bits |= 1 << v
    return bits


def _next_in(values: tuple[int, ...], v: int) -> int | None:
    """The smallest element of the sorted ``values`` that is ``>= v``, or None."""
    i = bisect.bisect_left(values, v)
    return values[i] if i < len(values) else None


def _days_in_month(year: int, month: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _DAYS_IN_MONTH[month]


@dataclass(frozen=True)
class CronSpec:
    """A parsed expression: the sorted set of allowed values of each field (all in UTC).

    ``days_of_week`` uses 1 = Sunday … 7 = Saturday. A 5- or 6-field expression has every year of
    1970–2100 in ``years``; a 5-field one has ``seconds == (0,)``.
    """

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: tuple[int, ...]
    months: tuple[int, ...]
    days_of_week: tuple[int, ...]
    years: tuple[int, ...]
    _dom_mask: int = field(init=False, repr=False, compare=False)
    _dow_mask: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_dom_mask", _mask(self.days_of_month))
        object.__setattr__(self, "_dow_mask", _mask(self.days_of_week))

    def matches(self, ms: int) -> bool:
        """Whether the whole second containing ``ms`` (epoch ms, UTC) is an occurrence."""
        secs = ms // 1000
        if not 0 <= secs < _HORIZON_S:
            return False
        days, sod = divmod(secs, 86_400)
        date = datetime.date.fromordinal(_EPOCH_ORDINAL + days)
        hour, rem = divmod(sod, 3600)
        minute, second = divmod(rem, 60)
        return (
            date.year in self.years
            and date.month in self.months
            and date.day in self.days_of_month
            and date.isoweekday() % 7 + 1 in self.days_of_week
            and hour in self.hours
            and minute in self.minutes
            and second in self.seconds
        )

    def next_after(self, ms: int) -> int | None:
        """The first occurrence (epoch ms, a multiple of 1000) strictly after ``ms`` truncated to whole
        seconds, or None if there is none up to the end of year 2100.

        Skips field by field (year, month, day, hour, minute, second), so the cost is a few steps per
        month scanned; an impossible expression (e.g. February 30) costs one step per year to 2100.
        """
        start = max(ms // 1000 + 1, 0)  # nothing can fire before 1970
        if start >= _HORIZON_S:
            return None
        days, sod = divmod(start, 86_400)
        date = datetime.date.fromordinal(_EPOCH_ORDINAL + days)
        y, mo, d = date.year, date.month, date.day
        h, rem = divmod(sod, 3600)
        mi, s = divmod(rem, 60)

        # Invariant: (y, mo, d, h, mi, s) is the earliest candidate (lower fields may be out of range
        # after a carry, e.g. d = 32 or h = 24, which the next pass turns into a carry upwards).
        while True:
            ny = _next_in(self.years, y)
            if ny is None:
                return None
            if ny != y:
                y, mo, d, h, mi, s = ny, 1, 1, 0, 0, 0

            nmo = _next_in(self.months, mo)
            if nmo is None:
                y, mo, d, h, mi, s = y + 1, 1, 1, 0, 0, 0
                continue
            if nmo != mo:
                mo, d, h, mi, s = nmo, 1, 0, 0, 0

            nd = self._next_day(y, mo, d)
            if nd is None:
                mo, d, h, mi, s = mo + 1, 1, 0, 0, 0
                if mo > 12:
                    y, mo = y + 1, 1
                continue
            if nd != d:
                d, h, mi, s = nd, 0, 0, 0

            nh = _next_in(self.hours, h)
            if nh is None:
                d, h, mi, s = d + 1, 0, 0, 0
                continue
            if nh != h:
                h, mi, s = nh, 0, 0

            nmi = _next_in(self.minutes, mi)
            if nmi is None:
                h, mi, s = h + 1, 0, 0
                continue
            if nmi != mi:
                mi, s = nmi, 0

            ns = _next_in(self.seconds, s)
            if ns is None:
                mi, s = mi + 1, 0
                continue

            day_number = datetime.date(y, mo, d).toordinal() - _EPOCH_ORDINAL
            return (day_number * 86_400 + h * 3600 + mi * 60 + ns) * 1000

    def _next_day(self, year: int, month: int, day: int) -> int | None:
        """The first day ``>= day`` of the month matching both day fields (AND), or None."""
        last = _days_in_month(year, month)
        if day > last:
            return None
        # Day of week of `day` with 1 = Sunday (isoweekday: Monday = 1 … Sunday = 7).
        dow = datetime.date(year, month, day).isoweekday() % 7 + 1
        dom_mask, dow_mask = self._dom_mask, self._dow_mask
        for candidate in range(day, last + 1):
            if dom_mask >> candidate & 1 and dow_mask >> dow & 1:
                return candidate
            dow = dow % 7 + 1
        return None


def _error(expr: str, detail: str) -> CronError:
    return CronError(f"invalid cron expression {expr!r}: {detail}", detail)


def _value(token: str, spec: _Field, expr: str) -> int:
    if token.isascii() and token.isdigit():
        if len(token) > 4:  # no field takes more than 4 digits; int() of 5,000 digits is an error of its own
            raise _error(
                expr, f"{spec.label} value {token[:8]}… is out of range {spec.lo}-{spec.hi}{spec.hint}"
            )
        number = int(token)
        if not spec.lo <= number <= spec.hi:
            raise _error(expr, f"{spec.label} value {number} is out of range {spec.lo}-{spec.hi}{spec.hint}")
        return number
    named = spec.names.get(token.lower())
    if named is not None:
        return named
    if not token:
        raise _error(expr, f"missing value in the {spec.label} field")
    if token == "?":
        raise _error(expr, "'?' is only allowed in the day-of-month and day-of-week fields")
    if _MODIFIER_RE.fullmatch(token):
        raise _error(expr, f"{token!r}: the L, W and # modifiers are not supported")
    raise _error(expr, f"{token!r} is not a valid {spec.label} value{spec.hint}")


def _parse_field(text: str, spec: _Field, expr: str) -> tuple[int, ...]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise _error(expr, f"empty list element in the {spec.label} field {text!r}")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not (step_text.isascii() and step_text.isdigit()):
                raise _error(expr, f"invalid step {step_text!r} in the {spec.label} field")
            span = spec.hi - spec.lo + 1
            step = int(step_text) if len(step_text) <= 4 else span + 1
            if step == 0:
                raise _error(expr, f"step must be at least 1 in the {spec.label} field")
            if step > span:
                raise _error(
                    expr, f"step {step_text[:8]} is larger than the {spec.label} field ({span} values)"
                )
        if base == "*" or (base == "?" and spec.allow_any):
            lo, hi = spec.lo, spec.hi
        elif "-" in base:
            first, _, last = base.partition("-")
            lo, hi = _value(first, spec, expr), _value(last, spec, expr)
            if lo > hi:
                raise _error(expr, f"invalid {spec.label} range {base!r} (start after end)")
        else:
            lo = _value(base, spec, expr)
            hi = spec.hi if slash else lo  # "a/n" means a to the maximum, step n
        values.update(range(lo, hi + 1, step))
    return tuple(sorted(values))


@functools.lru_cache(maxsize=1024)
def parse_cron(expr: str) -> CronSpec:
    """Parse a schedule's cron expression (docs/protocol/schedules.md#cron-dialect); raise CronError if it is
    invalid.

    Cached: it is called for every schedule tick.
    """
    if len(expr) > MAX_CRON_LENGTH:
        raise CronError(f"invalid cron expression: longer than {MAX_CRON_LENGTH} characters")
    text = expr.strip()
    if not text:
        raise _error(expr, "empty expression")
    if _CONTROL_RE.search(text):
        raise _error(expr, "control characters (a line break?) inside the expression")
    if text.startswith("@"):
        macro = _MACROS.get(text)
        if macro is None:
            raise _error(expr, f"unknown macro {text!r} (supported: {', '.join(_MACROS)})")
        text = macro
    parts = text.split()
    if len(parts) == 5:
        parts.insert(0, "0")
    elif len(parts) not in (6, 7):
        raise _error(expr, f"expected 5, 6 or 7 fields, got {len(parts)}")
    fields = [_parse_field(part, spec, expr) for part, spec in zip(parts, _FIELDS, strict=False)]
    years = fields[6] if len(fields) == 7 else tuple(range(MIN_YEAR, MAX_YEAR + 1))
    return CronSpec(
        seconds=fields[0],
        minutes=fields[1],
        hours=fields[2],
        days_of_month=fields[3],
        months=fields[4],
        days_of_week=fields[5],
        years=years,
    )


def render_promise_id(template: str, schedule_id: str, fire_ms: int) -> str:
    """A schedule's promise ID: every literal ``{{.id}}`` replaced by the schedule ID and every literal
    ``{{.timestamp}}`` by the fire time in decimal ms. Nothing else is template syntax (``{{ .id }}``
    stays as is), and substituted text is never substituted again.
    """
    timestamp = str(fire_ms)
    return _TEMPLATE_RE.sub(lambda m: schedule_id if m.group(1) == "id" else timestamp, template)


def template_head(template: str, schedule_id: str) -> str:
    """The text every id rendered from ``template`` starts with, whatever the fire time: the template up
    to its first ``{{.timestamp}}``, with ``{{.id}}`` replaced by the schedule ID."""
    out: list[str] = []
    at = 0
    for m in _TEMPLATE_RE.finditer(template):
        out.append(template[at : m.start()])
        if m.group(1) != "id":
            return "".join(out)
        out.append(schedule_id)
        at = m.end()
    out.append(template[at:])
    return "".join(out)
