"""The inference recorder: exact totals under concurrency, exception mapping, per-period min/max."""

from __future__ import annotations

import os
import queue
import re
import threading
from pathlib import Path

import pytest

import otel_neuron
from otel_neuron.runtime.recorder import (
    HardwareError,
    InferenceRecorder,
    ModelError,
    NumericalError,
    QueueFullError,
    Subgraph,
    TransientError,
    classify,
)


def test_totals_are_exact_with_many_threads_recording_while_snapshots_are_taken() -> None:
    recorder = InferenceRecorder(cores=2, devices=1)
    recorder.register_model("m", [Subgraph("sg0", 0), Subgraph("sg1", 1)])
    threads, per_thread = 8, 5000
    start = threading.Barrier(threads + 1)
    previous_completed = [0]

    def work(number: int) -> None:
        start.wait()
        for i in range(per_thread):
            latency = 0.001 * (1 + (i + number) % 50)
            recorder.record("m", "completed", latency, latency / 2)
            if i % 100 == 0:
                recorder.record("m", "completed_with_err", latency, None, "transient")

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    while any(worker.is_alive() for worker in workers):
        completed = recorder.snapshot().inferences.completed
        assert completed >= previous_completed[0]  # monotonic while threads write
        previous_completed[0] = completed
    snapshot = recorder.snapshot()
    assert snapshot.inferences.completed == threads * per_thread
    assert snapshot.inferences.completed_with_err == threads * per_thread // 100
    assert snapshot.errors.transient == threads * per_thread // 100
    ran = threads * per_thread + threads * per_thread // 100
    assert snapshot.total_latency.count == ran
    assert sum(snapshot.total_latency.bucket_counts) + snapshot.total_latency.zero_count == ran
    assert snapshot.total_latency.min == pytest.approx(0.001)
    assert snapshot.total_latency.max == pytest.approx(0.050)
    # device latency is split evenly between the model's two cores
    device_total = snapshot.device_latency.sum
    assert snapshot.cores[0].busy_seconds == pytest.approx(device_total / 2)
    assert snapshot.cores[1].busy_seconds == pytest.approx(device_total / 2)


@pytest.mark.parametrize(
    ("error", "outcome", "error_type"),
    [
        (None, "completed", None),
        (NumericalError(), "completed_with_num_err", "numerical"),
        (FloatingPointError(), "completed_with_num_err", "numerical"),
        (TransientError(), "completed_with_err", "transient"),
        (HardwareError(), "completed_with_err", "hardware"),
        (ModelError(), "completed_with_err", "model"),
        (TimeoutError(), "timed_out", "runtime"),
        (ValueError(), "incorrect_input", "generic"),
        (QueueFullError(), "failed_to_queue", "runtime"),
        (queue.Full(), "failed_to_queue", "runtime"),
        (KeyError("x"), "completed_with_err", "generic"),
    ],
)
def test_exceptions_map_to_the_guides_outcomes(
    error: BaseException | None, outcome: str, error_type: str
) -> None:
    assert classify(error) == (outcome, error_type)


IN_APP_GUIDE = Path(__file__).resolve().parents[2] / "docs" / "in-app.md"


def test_every_exception_the_in_app_guide_lists_is_public_and_counts_as_it_says() -> None:
    rows = re.findall(r"^\| `otel_neuron\.(\w+)`[^|]*\| `(\w+)` \| `(\w+)`", IN_APP_GUIDE.read_text(), re.M)
    assert len(rows) == 8
    for name, outcome, error_type in rows:
        assert name in otel_neuron.__all__
        error = getattr(otel_neuron, name)
        recorder = InferenceRecorder()
        with pytest.raises(error), recorder.time("m"):
            raise error()
        snapshot = recorder.snapshot()
        assert (getattr(snapshot.inferences, outcome), getattr(snapshot.errors, error_type)) == (1, 1), name


def test_the_context_manager_times_counts_and_reraises() -> None:
    recorder = InferenceRecorder()
    with recorder.time("m") as call:
        call.device_latency_s = 0.0001
    with pytest.raises(NumericalError):
        with recorder.time("m"):
            raise NumericalError("nan in output")

    @recorder.timed("m")
    def rejected() -> None:
        raise QueueFullError()

    with pytest.raises(QueueFullError):
        rejected()
    assert rejected.__name__ == "rejected"  # the decorated function keeps its name
    snapshot = recorder.snapshot()
    assert snapshot.inferences.completed == 1
    assert snapshot.inferences.completed_with_num_err == 1
    assert snapshot.inferences.failed_to_queue == 1
    assert snapshot.errors.numerical == 1 and snapshot.errors.runtime == 1
    assert snapshot.total_latency.count == 2  # the rejected call never ran
    assert 0.0001 in (snapshot.device_latency.min, snapshot.device_latency.max)


def test_each_snapshot_closes_a_min_max_window() -> None:
    recorder = InferenceRecorder()
    recorder.record("m", "completed", 0.5, 0.4)
    first = recorder.snapshot()
    recorder.record("m", "completed", 0.2, 0.1)
    recorder.record("m", "completed", 0.3, 0.25)
    second = recorder.snapshot()
    third = recorder.snapshot()
    assert [(w.epoch, w.total_min, w.total_max) for w in first.latency_windows] == [(1, 0.5, 0.5)]
    windows = {w.epoch: w for w in second.latency_windows if w.epoch > first.epoch}
    assert list(windows) == [2]
    assert (windows[2].total_min, windows[2].total_max) == (0.2, 0.3)
    assert (windows[2].device_min, windows[2].device_max) == (0.1, 0.25)
    assert [w.epoch for w in third.latency_windows if w.epoch > second.epoch] == []
    assert (second.total_latency.min, second.total_latency.max) == (0.2, 0.5)


def test_models_memory_and_ecc_show_in_the_snapshot() -> None:
    recorder = InferenceRecorder(cores=4, devices=2)
    recorder.set_runtime_memory(100, 200)
    model_id = recorder.register_model(
        "bert", [Subgraph("sg00", 3, host_bytes=10, device_bytes=20)], uuid="u1", host_bytes=5
    )
    recorder.record_ecc(1, "sram_ecc_uncorrected")
    snapshot = recorder.snapshot()
    (model,) = snapshot.models
    assert (model.name, model.uuid, model.model_id, model.is_running) == ("bert", "u1", model_id, True)
    assert (model.memory.host_bytes, model.memory.device_bytes) == (15, 20)
    assert model.subgraphs[0].neuron_device_index == 1  # core 3 of 4 on 2 devices
    assert (snapshot.runtime_memory.host_bytes, snapshot.runtime_memory.device_bytes) == (115, 220)
    assert [d.sram_ecc_uncorrected for d in snapshot.devices] == [0, 1]
    recorder.unregister_model(model_id)
    assert list(recorder.snapshot().models) == []


def test_bad_placement_is_refused() -> None:
    with pytest.raises(ValueError, match="core 4"):
        InferenceRecorder(cores=4).register_model("m", [Subgraph("sg", 4)])


def test_period_histograms_are_what_two_cumulative_snapshots_differ_by() -> None:
    recorder = InferenceRecorder()
    for latency in (0.5, 0.004, 0.004, 0.0):
        recorder.record("m", "completed", latency, latency / 2)
    first = recorder.snapshot()
    assert first.period_since_epoch == 0  # nothing asked
    recorder.record("m", "completed", 0.2, 0.1)
    recorder.record("m", "completed", 0.3, 0.25)
    recorder.record("m", "completed", 0.004, 0.0)
    second = recorder.snapshot(since_epoch=first.epoch)

    assert second.period_since_epoch == first.epoch
    for period, now, before in (
        (second.period_total_latency, second.total_latency, first.total_latency),
        (second.period_device_latency, second.device_latency, first.device_latency),
    ):
        assert period.count == now.count - before.count == 3
        assert period.zero_count == now.zero_count - before.zero_count
        assert period.sum == now.sum - before.sum
        assert dense_difference(now, before) == (period.offset, list(period.bucket_counts))
    assert (second.period_total_latency.min, second.period_total_latency.max) == (0.004, 0.3)
    assert (second.period_device_latency.min, second.period_device_latency.max) == (0.0, 0.25)
    assert [window.epoch for window in second.latency_windows] == [second.epoch]  # only those after


def dense_difference(now: object, before: object) -> tuple[int, list[int]]:
    """The bucket-wise difference of two cumulative histograms, trimmed of zero ends (as the monitor
    computes it without period histograms)."""
    counts: dict[int, int] = {}
    for histogram, sign in ((now, 1), (before, -1)):
        for position, count in enumerate(histogram.bucket_counts):  # type: ignore[attr-defined]
            index = histogram.offset + position  # type: ignore[attr-defined]
            counts[index] = counts.get(index, 0) + sign * count
    changed = sorted(index for index, count in counts.items() if count)
    if not changed:
        return 0, []
    return changed[0], [counts.get(index, 0) for index in range(changed[0], changed[-1] + 1)]


def test_period_histograms_span_other_pollers_epochs_until_they_are_no_longer_held() -> None:
    recorder = InferenceRecorder()
    mine = recorder.snapshot()
    recorder.record("m", "completed", 0.01)
    recorder.snapshot()  # another monitor's poll closes an epoch in between
    recorder.record("m", "completed", 0.02)
    later = recorder.snapshot(since_epoch=mine.epoch)
    assert later.period_since_epoch == mine.epoch
    assert (later.period_total_latency.count, later.period_total_latency.min) == (2, 0.01)
    assert later.period_total_latency.max == 0.02
    assert recorder.snapshot(since_epoch=later.epoch + 5).period_since_epoch == 0  # not an epoch yet

    old = recorder.snapshot()
    for _ in range(40):  # more polls than the epochs held for period histograms
        recorder.record("m", "completed", 0.03)
        recorder.snapshot()
    stale = recorder.snapshot(since_epoch=old.epoch)
    assert stale.period_since_epoch == 0
    assert not stale.HasField("period_total_latency")
    assert len(stale.latency_windows) == 40  # the windows still let a monitor subtract exactly


def test_the_models_revision_changes_with_the_models_and_only_then() -> None:
    recorder = InferenceRecorder(cores=2)
    revisions = [recorder.snapshot().models_revision]
    recorder.record("m", "completed", 0.01)
    recorder.set_runtime_memory(10, 20)
    revisions.append(recorder.snapshot().models_revision)
    model_id = recorder.register_model("m", [Subgraph("sg", 1)])
    revisions.append(recorder.snapshot().models_revision)
    recorder.set_model_running(model_id, False)
    revisions.append(recorder.snapshot().models_revision)
    recorder.unregister_model(model_id)
    revisions.append(recorder.snapshot().models_revision)
    assert revisions[0] == revisions[1] != 0
    assert len(set(revisions[1:])) == 4


def test_the_tag_is_the_argument_else_neuron_process_tag_else_the_pid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NEURON_PROCESS_TAG", raising=False)
    assert InferenceRecorder().snapshot().tag == str(os.getpid())
    monkeypatch.setenv("NEURON_PROCESS_TAG", "my_app_1")
    assert InferenceRecorder().snapshot().tag == "my_app_1"
    assert InferenceRecorder(tag="given").snapshot().tag == "given"
    monkeypatch.setenv("NEURON_PROCESS_TAG", "x" * 256)
    with pytest.raises(ValueError, match="NEURON_PROCESS_TAG is 256 characters long; a tag has at most 255"):
        InferenceRecorder()
    with pytest.raises(ValueError, match="^tag is 300 characters"):
        InferenceRecorder(tag="y" * 300)


def categories(parts: object) -> dict[str, int]:
    return {part.category: part.bytes for part in parts}  # type: ignore[attr-defined]


def test_host_memory_without_a_category_is_application_memory_and_device_memory_is_as_given() -> None:
    recorder = InferenceRecorder(cores=2)
    recorder.set_runtime_memory(100, 0, host_breakdown={"dma_buffers": 30})
    recorder.register_model("old", [Subgraph("sg00", 0, host_bytes=7, device_bytes=9)], host_bytes=5)
    snapshot = recorder.snapshot()
    assert categories(snapshot.runtime_memory.host_categories) == {
        "application_memory": 70 + 7 + 5,
        "constants": 0,
        "dma_buffers": 30,
        "tensors": 0,
    }
    assert snapshot.runtime_memory.host_bytes == 112
    (subgraph,) = snapshot.models[0].subgraphs
    assert categories(subgraph.memory.host_categories)["application_memory"] == 7
    assert list(subgraph.memory.device_categories) == []
    assert list(snapshot.core_memory) == []  # no device memory was given a category

    recorder.register_model(
        "new",
        [
            Subgraph(
                "sg00", 1, device_breakdown={"constants": 6, "model_code": 2}, host_breakdown={"tensors": 4}
            )
        ],
    )
    recorder.set_runtime_memory(
        100, 0, core_breakdown={0: {"runtime_memory": 10}, 1: {"model_shared_scratchpad": 5}}
    )
    snapshot = recorder.snapshot()
    new = snapshot.models[1]
    assert (new.memory.host_bytes, new.memory.device_bytes) == (4, 8)  # the sums of the breakdowns
    assert categories(new.subgraphs[0].memory.device_categories) == {"constants": 6, "model_code": 2}
    by_core = {core.core_index: categories(core.categories) for core in snapshot.core_memory}
    assert by_core[0] == {
        "constants": 0,
        "model_code": 0,
        "model_shared_scratchpad": 0,
        "runtime_memory": 10,
        "tensors": 0,
    }
    assert (by_core[1]["constants"], by_core[1]["model_code"], by_core[1]["model_shared_scratchpad"]) == (
        6,
        2,
        5,
    )
    assert snapshot.runtime_memory.device_bytes == 15 + 9 + 8  # runtime, "old" (no category), "new"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda r: r.set_runtime_memory(10, 0, host_breakdown={"heap": 1}),
            "'heap' is not one of application",
        ),
        (lambda r: r.set_runtime_memory(10, 0, host_breakdown={"tensors": 11}), "add up to 11 bytes, not 10"),
        (
            lambda r: r.set_runtime_memory(0, 5, core_breakdown={0: {"tensors": 4}}),
            "add up to 4 bytes, not 5",
        ),
        (lambda r: r.set_runtime_memory(0, 0, core_breakdown={2: {"tensors": 4}}), "core 2: not 0..1"),
        (
            lambda r: r.register_model(
                "m", [Subgraph("sg", 0, device_bytes=5, device_breakdown={"tensors": 4})]
            ),
            "subgraph 'sg' device memory: the categories add up to 4 bytes, not 5",
        ),
        (
            lambda r: r.register_model(
                "m", [Subgraph("sg", 0, device_breakdown={"model_shared_scratchpad": 4})]
            ),
            "'model_shared_scratchpad' is not one of constants, model_code, runtime_memory, tensors",
        ),
        (
            lambda r: r.register_model("m", [Subgraph("sg", 0, host_breakdown={"tensors": -1})]),
            "tensors must be a number of bytes >= 0, not -1",
        ),
        (lambda r: r.register_model("m", [], flops_per_inference=float("nan")), "finite number >= 0"),
    ],
)
def test_memory_that_does_not_fit_its_categories_is_refused_by_name(call: object, message: str) -> None:
    recorder = InferenceRecorder(cores=2)
    with pytest.raises(ValueError, match=re.escape(message)):
        call(recorder)  # type: ignore[operator]
    assert list(recorder.snapshot().models) == []


def test_flops_are_reported_per_core_once_counted_and_only_for_inferences_that_ran() -> None:
    recorder = InferenceRecorder(cores=3)
    assert not any(core.HasField("flops") for core in recorder.snapshot().cores)
    recorder.register_model("m", [Subgraph("sg00", 0), Subgraph("sg01", 2)], flops_per_inference=1e12)
    recorder.record("m", "completed", 0.01)
    recorder.record("m", "timed_out", 0.5)
    recorder.record("m", "completed", None)  # ran, latency unknown
    recorder.record("m", "incorrect_input", None)
    recorder.record("m", "failed_to_queue", None)
    recorder.record("other", "completed", 0.01)  # declared no flops
    recorder.add_core_flops(1, 5.0)
    cores = recorder.snapshot().cores
    assert all(core.HasField("flops") for core in cores)
    assert [core.flops for core in cores] == [1.5e12, 5.0, 1.5e12]


def test_model_errors_and_sram_corrected_ecc_events_are_counted() -> None:
    recorder = InferenceRecorder(devices=2)
    with pytest.raises(ModelError), recorder.time("m"):
        raise ModelError("bad weights")
    recorder.record("m", "completed_with_err", 0.1, error_type="model")
    recorder.record_ecc(1, "sram_ecc_corrected", 6)
    snapshot = recorder.snapshot()
    assert (snapshot.errors.model, snapshot.inferences.completed_with_err) == (2, 2)
    assert [device.sram_ecc_corrected for device in snapshot.devices] == [0, 6]
    assert [device.sram_ecc_uncorrected for device in snapshot.devices] == [0, 0]
