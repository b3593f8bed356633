"""The official server's cron dialect (docs/protocol/schedules.md,
docs/protocol/edge-cases.md#schedule-create)."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from troth.protocol.cron import MAX_YEAR, MIN_YEAR, CronError, CronSpec, parse_cron, render_promise_id

UTC = datetime.UTC
ALL_YEARS = tuple(range(MIN_YEAR, MAX_YEAR + 1))


def ms(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, milli: int = 0) -> int:
    return int(datetime.datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp()) * 1000 + milli


def dt(value: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(value / 1000, tz=UTC)


def upcoming(expr: str, start: int, n: int) -> list[datetime.datetime]:
    spec = parse_cron(expr)
    out: list[datetime.datetime] = []
    cur: int | None = start
    for _ in range(n):
        assert cur is not None
        cur = spec.next_after(cur)
        assert cur is not None
        out.append(dt(cur))
    return out


# --- field counts and basic syntax -----------------------------------------------------------------------


def test_five_fields_prepend_second_zero() -> None:
    spec = parse_cron("* * * * *")
    assert spec.seconds == (0,)
    assert spec.minutes == tuple(range(60))
    assert spec.hours == tuple(range(24))
    assert spec.days_of_month == tuple(range(1, 32))
    assert spec.months == tuple(range(1, 13))
    assert spec.days_of_week == tuple(range(1, 8))
    assert spec.years == ALL_YEARS


def test_six_fields_have_seconds() -> None:
    spec = parse_cron("*/15 * * * * *")  # §12 item 24: every 15 s
    assert spec.seconds == (0, 15, 30, 45)
    assert spec.years == ALL_YEARS
    assert upcoming("*/15 * * * * *", ms(2025, 1, 1, 12, 0, 7), 3) == [
        datetime.datetime(2025, 1, 1, 12, 0, 15, tzinfo=UTC),
        datetime.datetime(2025, 1, 1, 12, 0, 30, tzinfo=UTC),
        datetime.datetime(2025, 1, 1, 12, 0, 45, tzinfo=UTC),
    ]


def test_seven_fields_have_a_year() -> None:
    spec = parse_cron("0 0 0 1 1 * 2030,2032-2033")
    assert spec.years == (2030, 2032, 2033)
    assert upcoming("0 0 0 1 1 * 2030,2032-2033", ms(2025, 6, 1), 3) == [
        datetime.datetime(2030, 1, 1, tzinfo=UTC),
        datetime.datetime(2032, 1, 1, tzinfo=UTC),
        datetime.datetime(2033, 1, 1, tzinfo=UTC),
    ]
    assert parse_cron("0 0 0 1 1 * 2033").next_after(ms(2033, 1, 1)) is None


def test_year_field_bounds_and_steps() -> None:
    assert parse_cron("0 0 0 1 1 * 1970").years == (1970,)
    assert parse_cron("0 0 0 1 1 * 2100").years == (2100,)
    assert parse_cron("0 0 0 1 1 * 2090/5").years == (2090, 2095, 2100)
    assert parse_cron("0 0 0 1 1 * *").years == ALL_YEARS
    for bad in ("1969", "2101", "1969-2000"):
        with pytest.raises(CronError, match="year"):
            parse_cron(f"0 0 0 1 1 * {bad}")


def test_numbers_ranges_lists() -> None:
    spec = parse_cron("5 10-12 1,15,31 * *")
    assert spec.seconds == (0,)
    assert spec.minutes == (5,)
    assert spec.hours == (10, 11, 12)
    assert spec.days_of_month == (1, 15, 31)


def test_lists_mix_elements_and_deduplicate() -> None:
    assert parse_cron("1,3-5,*/20,4 * * * *").minutes == (0, 1, 3, 4, 5, 20, 40)


def test_steps() -> None:
    assert parse_cron("*/20 * * * *").minutes == (0, 20, 40)
    assert parse_cron("10-30/7 * * * *").minutes == (10, 17, 24)
    assert parse_cron("50/3 * * * *").minutes == (50, 53, 56, 59)  # a/n: a to max, step n
    assert parse_cron("* * */10 * *").days_of_month == (1, 11, 21, 31)  # from the field's minimum
    assert parse_cron("* * * */5 *").months == (1, 6, 11)
    assert parse_cron("* * * * */3").days_of_week == (1, 4, 7)
    assert parse_cron("*/60 * * * *").minutes == (0,)  # a step as large as the field is fine
    for expr in ("*/61 * * * *", "*/99999999999999999999 * * * *", "0 0 0 1 1 * */132"):
        with pytest.raises(CronError, match="is larger than the"):
            parse_cron(expr)  # … a larger one is a mistake (docs/operations/limits.md)
    assert parse_cron("5-5/1 * * * *").minutes == (5,)


def test_question_mark_in_day_fields() -> None:
    assert parse_cron("0 0 ? * MON") == parse_cron("0 0 * * MON")
    assert parse_cron("0 0 1 * ?") == parse_cron("0 0 1 * *")
    assert parse_cron("0 0 ?/10 * *").days_of_month == (1, 11, 21, 31)
    for expr in ("? * * * *", "* ? * * *", "* * * ? *", "? * * * * *", "0 0 0 1 1 * ?"):
        with pytest.raises(CronError, match=r"'\?' is only allowed"):
            parse_cron(expr)


def test_month_names() -> None:
    assert parse_cron("0 0 1 jan *").months == (1,)
    assert parse_cron("0 0 1 JAN,Feb,mAr *").months == (1, 2, 3)
    assert parse_cron("0 0 1 December *").months == (12,)
    assert parse_cron("0 0 1 MAY-aug *").months == (5, 6, 7, 8)
    assert parse_cron("0 0 1 september-NOVEMBER *").months == (9, 10, 11)
    assert parse_cron("0 0 1 jan-dec/3 *").months == (1, 4, 7, 10)


def test_day_names_sunday_is_one() -> None:
    assert parse_cron("0 0 * * SUN").days_of_week == (1,)
    assert parse_cron("0 0 * * sat").days_of_week == (7,)
    assert parse_cron("0 0 * * MON-FRI").days_of_week == (2, 3, 4, 5, 6)
    assert parse_cron("0 0 * * Sunday,Wednesday,saturday").days_of_week == (1, 4, 7)
    assert parse_cron("0 0 * * tue,thu").days_of_week == (3, 5)
    assert parse_cron("0 0 * * Tues,Thurs").days_of_week == (3, 5)  # accepted upstream too


def test_numeric_dow_1_to_5_is_sunday_to_thursday() -> None:
    got = upcoming("0 9 * * 1-5", ms(2025, 1, 4, 12), 6)  # 2025-01-04 is a Saturday
    assert [d.strftime("%a %d") for d in got] == ["Sun 05", "Mon 06", "Tue 07", "Wed 08", "Thu 09", "Sun 12"]
    assert all(d.hour == 9 and d.minute == 0 and d.second == 0 for d in got)


def test_names_are_only_for_months_and_days() -> None:
    for expr in ("jan * * * *", "* mon * * *", "* * jan * *", "* * * mon *", "* * * * jan"):
        with pytest.raises(CronError, match="not a valid"):
            parse_cron(expr)


def test_whitespace_is_flexible() -> None:
    assert parse_cron("  0\t0  1 *   *\n") == parse_cron("0 0 1 * *")


@pytest.mark.parametrize(
    "expr", ["0 0\n1 * *", "0 0 1 *\r*", "0 0 1 * *\x00", "* * * * * " + "0," * 200 + "0"]
)
def test_line_breaks_control_characters_and_length_are_refused(expr: str) -> None:
    with pytest.raises(CronError) as info:
        parse_cron(expr)
    assert "\n" not in str(info.value)


def test_huge_numbers_are_out_of_range_not_a_crash() -> None:
    with pytest.raises(CronError, match="out of range"):
        parse_cron("9" * 200 + " * * * *")


# --- macros ----------------------------------------------------------------------------------------------


def test_macros() -> None:
    assert parse_cron("@yearly") == parse_cron("0 0 0 1 1 *")
    assert parse_cron("@monthly") == parse_cron("0 0 0 1 * *")
    assert parse_cron("@weekly") == parse_cron("0 0 0 * * SUN")
    assert parse_cron("@daily") == parse_cron("0 0 0 * * *")
    assert parse_cron("@hourly") == parse_cron("0 0 * * * *")


def test_macro_firing_times() -> None:
    start = ms(2025, 1, 1, 10, 30)  # a Wednesday
    assert upcoming("@weekly", start, 2) == [
        datetime.datetime(2025, 1, 5, tzinfo=UTC),
        datetime.datetime(2025, 1, 12, tzinfo=UTC),
    ]
    assert upcoming("@daily", start, 1) == [datetime.datetime(2025, 1, 2, tzinfo=UTC)]
    assert upcoming("@hourly", start, 1) == [datetime.datetime(2025, 1, 1, 11, tzinfo=UTC)]
    assert upcoming("@monthly", start, 1) == [datetime.datetime(2025, 2, 1, tzinfo=UTC)]
    assert upcoming("@yearly", start, 1) == [datetime.datetime(2026, 1, 1, tzinfo=UTC)]


@pytest.mark.parametrize(
    "macro", ["@annually", "@midnight", "@reboot", "@every 5m", "@", "@DAILY", "@daily *"]
)
def test_unknown_macros_are_rejected(macro: str) -> None:
    with pytest.raises(CronError, match="unknown macro"):
        parse_cron(macro)


# --- rejections ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("0 0 * * 0", "day-of-week value 0 is out of range 1-7"),  # §12 item 24
        ("0 0 * * 0-5", "day-of-week value 0"),
        ("0 0 * * 8", "day-of-week value 8"),
        ("60 * * * * *", "second value 60"),
        ("60 * * * *", "minute value 60"),
        ("* 24 * * *", "hour value 24"),
        ("* * 0 * *", "day-of-month value 0"),
        ("* * 32 * *", "day-of-month value 32"),
        ("* * * 0 *", "month value 0"),
        ("* * * 13 *", "month value 13"),
        ("*/0 * * * *", "step must be at least 1"),
        ("*/ * * * *", "invalid step"),
        ("*/x * * * *", "invalid step"),
        ("*/-1 * * * *", "invalid step"),
        ("1/2/3 * * * *", "invalid step"),
        ("*/1.5 * * * *", "invalid step"),
        ("5-1 * * * *", "start after end"),
        ("* * * * FRI-MON", "start after end"),
        ("-5 * * * *", "missing value"),
        ("5- * * * *", "missing value"),
        ("1,,2 * * * *", "empty list element"),
        ("1, * * * *", "empty list element"),
        (",1 * * * *", "empty list element"),
        ("1-2-3 * * * *", "not a valid minute value"),
        ("** * * * *", "not a valid minute value"),
        ("+5 * * * *", "not a valid minute value"),
        ("٣ * * * *", "not a valid minute value"),  # non-ASCII digit
        ("* * * * TURTLE", "not a valid day-of-week value"),
        ("* * * BLAH *", "not a valid month value"),
        ("0 0 L * *", "modifiers are not supported"),
        ("0 0 15W * *", "modifiers are not supported"),
        ("0 0 LW * *", "modifiers are not supported"),
        ("0 0 L-3 * *", "modifiers are not supported"),
        ("0 0 * * 6L", "modifiers are not supported"),
        ("0 0 * * 6#3", "modifiers are not supported"),
        ("0 0 * * FRI#1", "modifiers are not supported"),
        ("", "empty expression"),
        ("   ", "empty expression"),
        ("* * * *", "expected 5, 6 or 7 fields, got 4"),
        ("*", "expected 5, 6 or 7 fields, got 1"),
        ("* * * * * * * *", "expected 5, 6 or 7 fields, got 8"),
    ],
)
def test_rejections(expr: str, fragment: str) -> None:
    with pytest.raises(CronError) as info:
        parse_cron(expr)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_error_message_is_one_line_even_for_multiline_input() -> None:
    with pytest.raises(CronError) as info:
        parse_cron("0 0\n* * 0")
    assert "\n" not in str(info.value)
    assert "line break" in str(info.value)
    with pytest.raises(CronError) as info:
        parse_cron("0 0 * * 0")
    assert "(1 = Sunday" in str(info.value)


def test_parse_is_cached() -> None:
    assert parse_cron("7 7 * * *") is parse_cron("7 7 * * *")


def test_spec_is_frozen_and_hashable() -> None:
    spec = parse_cron("0 0 * * *")
    with pytest.raises(AttributeError):
        spec.seconds = (1,)  # type: ignore[misc]
    assert hash(spec) == hash(parse_cron("0 0 0 * * *"))


# --- next_after: boundaries ------------------------------------------------------------------------------


def test_next_after_truncates_to_seconds() -> None:
    # §12 item 25: created at 12:00:30.5 → nextRunAt 12:01:00.000; firing at 12:01:00 → next 12:02:00.
    spec = parse_cron("* * * * *")
    assert spec.next_after(ms(2025, 1, 1, 12, 0, 30, 500)) == ms(2025, 1, 1, 12, 1)
    assert spec.next_after(ms(2025, 1, 1, 12, 1)) == ms(2025, 1, 1, 12, 2)
    assert spec.next_after(ms(2025, 1, 1, 12, 0, 59, 999)) == ms(2025, 1, 1, 12, 1)
    assert spec.next_after(ms(2025, 1, 1, 12, 1) - 1) == ms(2025, 1, 1, 12, 1)


def test_next_after_is_strictly_after_the_truncated_second() -> None:
    spec = parse_cron("* * * * * *")
    base = ms(2025, 3, 3, 3, 3, 3)
    assert spec.next_after(base) == base + 1000
    assert spec.next_after(base + 1) == base + 1000
    assert spec.next_after(base + 999) == base + 1000
    assert spec.next_after(base - 1) == base


def test_results_are_whole_seconds_and_match() -> None:
    spec = parse_cron("*/7 */11 * * * *")
    cur = ms(2025, 5, 5, 5, 5, 5, 123)
    for _ in range(50):
        nxt = spec.next_after(cur)
        assert nxt is not None
        assert nxt > cur
        assert nxt % 1000 == 0
        assert spec.matches(nxt)
        cur = nxt


def test_carries_across_minute_hour_day_month_year() -> None:
    assert parse_cron("0 * * * * *").next_after(ms(2025, 1, 1, 0, 0, 59)) == ms(2025, 1, 1, 0, 1)
    assert parse_cron("0 0 * * * *").next_after(ms(2025, 1, 1, 0, 59, 59)) == ms(2025, 1, 1, 1)
    assert parse_cron("0 0 * * *").next_after(ms(2025, 1, 31, 23, 59, 59)) == ms(2025, 2, 1)
    assert parse_cron("0 0 * * *").next_after(ms(2025, 12, 31, 23, 59, 59, 999)) == ms(2026, 1, 1)
    assert parse_cron("59 59 23 31 12 *").next_after(ms(2025, 12, 31, 23, 59, 58)) == ms(
        2025, 12, 31, 23, 59, 59
    )
    assert parse_cron("59 59 23 31 12 *").next_after(ms(2025, 12, 31, 23, 59, 59)) == ms(
        2026, 12, 31, 23, 59, 59
    )


def test_later_field_resets_lower_fields() -> None:
    # At 10:30:45 with "15 20 11 * * *": the next hour resets minute and second to their first values.
    assert parse_cron("15 20 11 * * *").next_after(ms(2025, 1, 1, 10, 30, 45)) == ms(2025, 1, 1, 11, 20, 15)
    assert parse_cron("15 20 9 * * *").next_after(ms(2025, 1, 1, 10, 30, 45)) == ms(2025, 1, 2, 9, 20, 15)
    assert parse_cron("10,50 * * * * *").next_after(ms(2025, 1, 1, 0, 0, 30)) == ms(2025, 1, 1, 0, 0, 50)


def test_day_31_skips_short_months() -> None:
    got = upcoming("0 0 31 * *", ms(2025, 1, 31), 4)
    assert [(d.month, d.day) for d in got] == [(3, 31), (5, 31), (7, 31), (8, 31)]


def test_leap_day() -> None:
    got = upcoming("0 0 29 2 *", ms(2023, 1, 1), 3)
    assert got == [
        datetime.datetime(2024, 2, 29, tzinfo=UTC),
        datetime.datetime(2028, 2, 29, tzinfo=UTC),
        datetime.datetime(2032, 2, 29, tzinfo=UTC),
    ]
    # 2100 is not a leap year (and is the last year there is), so nothing after 2096.
    spec = parse_cron("0 0 29 2 *")
    assert spec.next_after(ms(2096, 2, 29)) is None
    assert parse_cron("0 0 0 29 2 * 2000").next_after(ms(1999, 1, 1)) == ms(2000, 2, 29)  # 400-year rule


def test_feb_29_on_a_sunday_with_and_semantics() -> None:
    # Feb 29 falling on a Sunday: 2004, 2032, 2060, …
    got = upcoming("0 0 29 2 SUN", ms(2000, 1, 1), 2)
    assert got == [datetime.datetime(2004, 2, 29, tzinfo=UTC), datetime.datetime(2032, 2, 29, tzinfo=UTC)]


def test_dom_and_dow_are_anded() -> None:
    # Friday the 13th only (Vixie cron would fire on every 13th and on every Friday).
    got = upcoming("0 0 13 * FRI", ms(2025, 1, 1), 3)
    assert got == [
        datetime.datetime(2025, 6, 13, tzinfo=UTC),
        datetime.datetime(2026, 2, 13, tzinfo=UTC),
        datetime.datetime(2026, 3, 13, tzinfo=UTC),
    ]
    assert all(d.weekday() == 4 and d.day == 13 for d in got)


def test_dom_only_and_dow_only() -> None:
    assert [d.day for d in upcoming("0 0 13 * *", ms(2025, 1, 1), 2)] == [13, 13]
    assert [d.strftime("%a") for d in upcoming("0 0 * * FRI", ms(2025, 1, 1), 3)] == ["Fri"] * 3
    assert [d.strftime("%a") for d in upcoming("0 0 ? * FRI", ms(2025, 1, 1), 3)] == ["Fri"] * 3


def test_impossible_expressions_return_none() -> None:
    for expr in ("0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 0 30 2 *", "0 0 0 31 2 MON"):
        assert parse_cron(expr).next_after(ms(2025, 1, 1)) is None


def test_no_occurrence_after_2100() -> None:
    assert parse_cron("* * * * * *").next_after(ms(2100, 12, 31, 23, 59, 58)) == ms(2100, 12, 31, 23, 59, 59)
    assert parse_cron("* * * * * *").next_after(ms(2100, 12, 31, 23, 59, 59)) is None
    assert parse_cron("* * * * *").next_after(ms(2500, 1, 1)) is None
    assert parse_cron("0 0 0 1 1 * 2020").next_after(ms(2025, 1, 1)) is None  # past years only


def test_before_1970() -> None:
    assert parse_cron("* * * * * *").next_after(-1) == 0
    assert parse_cron("* * * * * *").next_after(-(10**15)) == 0
    assert parse_cron("0 0 0 1 1 * 1970").next_after(-5000) == 0
    assert parse_cron("0 0 0 1 1 * 1970").next_after(0) is None


def test_matches() -> None:
    spec = parse_cron("30 15 10 * * MON")
    assert spec.matches(ms(2025, 1, 6, 10, 15, 30))  # a Monday
    assert spec.matches(ms(2025, 1, 6, 10, 15, 30, 999))
    assert not spec.matches(ms(2025, 1, 7, 10, 15, 30))
    assert not spec.matches(ms(2025, 1, 6, 10, 15, 31))
    assert not spec.matches(-1000)


def test_impossible_expression_is_fast() -> None:
    spec = CronSpec(
        seconds=(0,),
        minutes=(0,),
        hours=(0,),
        days_of_month=(30,),
        months=(2,),
        days_of_week=(1,),
        years=ALL_YEARS,
    )
    for _ in range(200):
        assert spec.next_after(0) is None


# --- render_promise_id -----------------------------------------------------------------------------------


def test_render_promise_id() -> None:
    fire = ms(2025, 1, 1, 12, 1)
    assert render_promise_id("s-{{.id}}-{{.timestamp}}", "nightly", fire) == f"s-nightly-{fire}"
    assert render_promise_id("{{.id}}{{.id}}/{{.timestamp}}{{.timestamp}}", "a", 5) == "aa/55"
    assert render_promise_id("fixed", "a", 5) == "fixed"
    assert render_promise_id("", "a", 5) == ""
    assert render_promise_id("{{.timestamp}}", "a", 0) == "0"


def test_render_promise_id_is_literal() -> None:
    for template in ("{{ .id }}", "{{id}}", "{{.ID}}", "{{.Timestamp}}", "{.id}", "{{.id}", "{{.unknown}}"):
        assert render_promise_id(template, "a", 5) == template
    assert render_promise_id("{{{.id}}}", "a", 5) == "{a}"


def test_render_promise_id_does_not_resubstitute() -> None:
    assert render_promise_id("{{.id}}-{{.timestamp}}", "{{.timestamp}}", 7) == "{{.timestamp}}-7"
    assert render_promise_id("{{.id}}", "{{.id}}", 7) == "{{.id}}"
    assert render_promise_id("{{.ti{{.id}}mestamp}}", "", 7) == "{{.timestamp}}"


# --- property: agree with a brute-force matcher ----------------------------------------------------------


def _field_text(draw: st.DrawFn, lo: int, hi: int, names: list[str] | None = None) -> str:
    """A random simple field: *, a number, a range, a list, a step, or a name."""
    kind = draw(
        st.sampled_from(["*", "*", "*", "num", "range", "list", "step", "rangestep", "pointstep", "name"])
    )
    num = st.integers(lo, hi)
    if kind == "*":
        return "*"
    if kind == "num":
        return str(draw(num))
    if kind == "range":
        a, b = sorted((draw(num), draw(num)))
        return f"{a}-{b}"
    if kind == "list":
        return ",".join(str(v) for v in draw(st.lists(num, min_size=1, max_size=4)))
    if kind == "step":
        return f"*/{draw(st.integers(1, hi - lo + 1))}"
    if kind == "rangestep":
        a, b = sorted((draw(num), draw(num)))
        return f"{a}-{b}/{draw(st.integers(1, 5))}"
    if kind == "pointstep":
        return f"{draw(num)}/{draw(st.integers(1, min(10, hi - lo + 1)))}"
    if names:
        return draw(st.sampled_from(names))
    return str(draw(num))


@st.composite
def time_fields(draw: st.DrawFn, with_seconds: bool) -> tuple[str, ...]:
    sec = (_field_text(draw, 0, 59),) if with_seconds else ()
    return (*sec, _field_text(draw, 0, 59), _field_text(draw, 0, 23))


_MONTHS = ["jan", "FEB", "Mar", "apr", "MAY", "June", "July", "aug", "Sep", "oct", "NOV", "december"]
_DAYS = ["sun", "MON", "Tue", "wed", "THU", "friday", "Saturday"]


@st.composite
def day_fields(draw: st.DrawFn) -> tuple[str, str, str]:
    dom = draw(st.sampled_from(["*", "?"])) if draw(st.booleans()) else _field_text(draw, 1, 31)
    dow = draw(st.sampled_from(["*", "?"])) if draw(st.booleans()) else _field_text(draw, 1, 7, _DAYS)
    return dom, _field_text(draw, 1, 12, _MONTHS), dow


def _cron_dow(d: datetime.date) -> int:
    return (d.weekday() + 1) % 7 + 1  # Monday (0) → 2, Sunday (6) → 1


def _brute_time(spec: CronSpec, t: datetime.datetime) -> bool:
    return t.second in spec.seconds and t.minute in spec.minutes and t.hour in spec.hours


def _brute_day(spec: CronSpec, d: datetime.date) -> bool:
    return (
        d.year in spec.years
        and d.month in spec.months
        and d.day in spec.days_of_month
        and _cron_dow(d) in spec.days_of_week
    )


@settings(max_examples=150, deadline=None)
@given(
    fields=time_fields(with_seconds=False),
    start=st.integers(ms(2000, 1, 1), ms(2099, 1, 1)),
)
def test_five_field_time_matches_brute_force_minute_by_minute(fields: tuple[str, ...], start: int) -> None:
    spec = parse_cron(" ".join((*fields, "*", "*", "*")))
    window_end = start + 3 * 86_400_000  # three days of minutes
    t = datetime.datetime.fromtimestamp(start // 60_000 * 60, tz=UTC) + datetime.timedelta(minutes=1)
    expected: int | None = None
    while t.timestamp() * 1000 <= window_end:
        if _brute_time(spec, t):
            expected = int(t.timestamp()) * 1000
            break
        t += datetime.timedelta(minutes=1)
    got = spec.next_after(start)
    if expected is not None:
        assert got == expected
    else:
        assert got is None or got > window_end


@settings(max_examples=100, deadline=None)
@given(
    fields=time_fields(with_seconds=True),
    start=st.integers(ms(2000, 1, 1), ms(2099, 1, 1)),
)
def test_six_field_time_matches_brute_force_second_by_second(fields: tuple[str, ...], start: int) -> None:
    spec = parse_cron(" ".join((*fields, "*", "*", "*")))
    window_end = start + 2 * 3_600_000  # two hours of seconds
    t = datetime.datetime.fromtimestamp(start // 1000 + 1, tz=UTC)
    expected: int | None = None
    while t.timestamp() * 1000 <= window_end:
        if _brute_time(spec, t):
            expected = int(t.timestamp()) * 1000
            break
        t += datetime.timedelta(seconds=1)
    got = spec.next_after(start)
    if expected is not None:
        assert got == expected
    else:
        assert got is None or got > window_end


@settings(max_examples=150, deadline=None)
@given(
    days=day_fields(),
    year_field=st.sampled_from(["", "*", "2024-2026", "2025,2027", "2024/2", "2030"]),
    start=st.integers(ms(2020, 1, 1), ms(2032, 1, 1)),
)
def test_day_fields_match_brute_force_day_by_day(
    days: tuple[str, str, str], year_field: str, start: int
) -> None:
    spec = parse_cron(" ".join(("0 0 0", *days, year_field)))
    window_end = start + 4 * 366 * 86_400_000  # about four years of days
    d = datetime.datetime.fromtimestamp(start // 1000, tz=UTC).date() + datetime.timedelta(days=1)
    expected: int | None = None
    while (e := ms(d.year, d.month, d.day)) <= window_end:
        if _brute_day(spec, d):
            expected = e
            break
        d += datetime.timedelta(days=1)
    got = spec.next_after(start)
    if expected is not None:
        assert got == expected
    else:
        assert got is None or got > window_end
    if got is not None:
        assert spec.matches(got)
        assert _brute_day(spec, dt(got).date())
