"""The fixed-rate schedule, driven by a fake clock the way MonitorPipeline.run drives it with a real one."""

from __future__ import annotations

from collections import defaultdict

import pytest

from otel_neuron.scheduling import FixedRateSchedule

START = 1000.0


def simulate(periods: list[float], ticks: int, work, start: float = START) -> dict[float, list[float]]:  # type: ignore[no-untyped-def]
    """Run the monitor's loop (wait until due, collect the due groups, repeat) for `ticks` reports.

    `work(tick, due_periods)` is how long that collection takes.
    Returns the instants at which each period was collected.
    """
    schedule = FixedRateSchedule(periods, start)
    now = start
    collected: dict[float, list[float]] = defaultdict(list)
    for tick in range(ticks):
        now = max(now, schedule.next_due())  # the wait
        due = schedule.pop_due(now)
        assert due, f"tick {tick}: woke at {now} with nothing due"
        for period in due:
            collected[period].append(now)
        now += work(tick, due)
    return collected


@pytest.mark.parametrize("period", [1.0, 0.5, 0.1, 0.3, 1.5])
def test_no_drift_over_600_ticks_when_each_collection_takes_30_percent(period: float) -> None:
    instants = simulate([period], 600, lambda tick, due: 0.3 * period)[period]

    assert len(instants) == 600
    # The k-th collection is due at start + k * period: nothing accumulates, not even float error.
    for k, instant in enumerate(instants, start=1):
        assert instant == pytest.approx(START + k * period, abs=1e-9)
    mean = (instants[-1] - START) / len(instants)
    assert mean == pytest.approx(period, rel=1e-9)


def test_a_slow_collection_skips_the_missed_ticks_instead_of_bunching_them() -> None:
    # Tick 10 takes 2.5 periods; every other collection takes 10 %.
    instants = simulate([1.0], 50, lambda tick, due: 2.5 if tick == 10 else 0.1)[1.0]

    late = START + 11 + 2.5  # tick 10 ran at start + 11 s and ended 2.5 s later
    assert instants[:11] == [START + k for k in range(1, 12)]
    assert instants[11] == pytest.approx(late)  # the two missed ticks become one late collection...
    assert instants[12] == pytest.approx(START + 14)  # ...and then the grid resumes, not a burst
    gaps = [b - a for a, b in zip(instants, instants[1:], strict=False)]
    assert min(gaps) >= 0.5
    assert instants[-1] == pytest.approx(START + 14 + 37)  # still on the original grid, 37 ticks later


def test_groups_due_at_the_same_instant_are_collected_in_one_tick() -> None:
    schedule = FixedRateSchedule([1.0, 2.0], START)
    reports = []
    for _ in range(6):
        now = schedule.next_due()
        reports.append((now - START, sorted(schedule.pop_due(now))))

    assert reports == [
        (1.0, [1.0]),
        (2.0, [1.0, 2.0]),
        (3.0, [1.0]),
        (4.0, [1.0, 2.0]),
        (5.0, [1.0]),
        (6.0, [1.0, 2.0]),
    ]


def test_periods_that_coincide_only_in_float_arithmetic_still_share_a_report() -> None:
    # 3 x 0.1 is not 0.3 in binary floating point; the two must still land in one report.
    collected = simulate([0.1, 0.3], 300, lambda tick, due: 0.01)
    assert len(collected[0.1]) == 300
    assert len(collected[0.3]) == 100
    assert set(collected[0.3]) <= set(collected[0.1])


def test_a_1s_and_2s_group_update_in_the_ratio_2_to_1_with_30_percent_work() -> None:
    collected = simulate([1.0, 2.0], 600, lambda tick, due: 0.3)
    assert len(collected[1.0]) == 600
    assert len(collected[2.0]) == 300
    assert collected[2.0][-1] == pytest.approx(START + 600.0)


def test_a_late_wake_up_is_not_followed_by_a_catch_up_burst() -> None:
    schedule = FixedRateSchedule([1.0], START)
    assert schedule.pop_due(START + 5.7) == [1.0]  # the process was stopped for ~5 s
    assert schedule.next_due() == pytest.approx(START + 6.0)
    assert schedule.pop_due(START + 5.8) == []


def test_each_collection_knows_the_time_it_was_due_even_when_late() -> None:
    schedule = FixedRateSchedule([1.0, 5.0], START)
    assert schedule.pop_due(START + 1.0004) == [1.0]
    assert schedule.last_due_at == pytest.approx(START + 1.0)
    assert sorted(schedule.pop_due(START + 5.3)) == [1.0, 5.0]  # late: the times it skipped are not due
    assert schedule.last_due_at == pytest.approx(START + 5.0)
