from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("protocol_version", "since_epoch", "answer_in_nano")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SINCE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    ANSWER_IN_NANO_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    since_epoch: int
    answer_in_nano: int
    def __init__(self, protocol_version: _Optional[int] = ..., since_epoch: _Optional[int] = ..., answer_in_nano: _Optional[int] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("protocol_version", "runtime_id", "pid", "start_time_unix_nano", "time_unix_nano", "uptime_nano", "vcpu_count", "cores", "runtime_memory", "models", "cpu", "inferences", "errors", "total_latency", "device_latency", "devices", "epoch", "oldest_epoch", "latency_windows", "snapshot_socket", "defers_answers", "period_since_epoch", "period_total_latency", "period_device_latency", "models_revision", "tag", "core_memory", "memory_revision")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    UPTIME_NANO_FIELD_NUMBER: _ClassVar[int]
    VCPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_MEMORY_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    INFERENCES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_LATENCY_FIELD_NUMBER: _ClassVar[int]
    DEVICE_LATENCY_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    OLDEST_EPOCH_FIELD_NUMBER: _ClassVar[int]
    LATENCY_WINDOWS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_SOCKET_FIELD_NUMBER: _ClassVar[int]
    DEFERS_ANSWERS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_SINCE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PERIOD_TOTAL_LATENCY_FIELD_NUMBER: _ClassVar[int]
    PERIOD_DEVICE_LATENCY_FIELD_NUMBER: _ClassVar[int]
    MODELS_REVISION_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    CORE_MEMORY_FIELD_NUMBER: _ClassVar[int]
    MEMORY_REVISION_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    runtime_id: str
    pid: int
    start_time_unix_nano: int
    time_unix_nano: int
    uptime_nano: int
    vcpu_count: int
    cores: _containers.RepeatedCompositeFieldContainer[NeuronCore]
    runtime_memory: MemoryUsage
    models: _containers.RepeatedCompositeFieldContainer[Model]
    cpu: CpuTime
    inferences: InferenceTotals
    errors: ErrorTotals
    total_latency: LatencyHistogram
    device_latency: LatencyHistogram
    devices: _containers.RepeatedCompositeFieldContainer[DeviceEcc]
    epoch: int
    oldest_epoch: int
    latency_windows: _containers.RepeatedCompositeFieldContainer[LatencyWindow]
    snapshot_socket: str
    defers_answers: bool
    period_since_epoch: int
    period_total_latency: LatencyHistogram
    period_device_latency: LatencyHistogram
    models_revision: int
    tag: str
    core_memory: _containers.RepeatedCompositeFieldContainer[CoreMemory]
    memory_revision: int
    def __init__(self, protocol_version: _Optional[int] = ..., runtime_id: _Optional[str] = ..., pid: _Optional[int] = ..., start_time_unix_nano: _Optional[int] = ..., time_unix_nano: _Optional[int] = ..., uptime_nano: _Optional[int] = ..., vcpu_count: _Optional[int] = ..., cores: _Optional[_Iterable[_Union[NeuronCore, _Mapping]]] = ..., runtime_memory: _Optional[_Union[MemoryUsage, _Mapping]] = ..., models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., cpu: _Optional[_Union[CpuTime, _Mapping]] = ..., inferences: _Optional[_Union[InferenceTotals, _Mapping]] = ..., errors: _Optional[_Union[ErrorTotals, _Mapping]] = ..., total_latency: _Optional[_Union[LatencyHistogram, _Mapping]] = ..., device_latency: _Optional[_Union[LatencyHistogram, _Mapping]] = ..., devices: _Optional[_Iterable[_Union[DeviceEcc, _Mapping]]] = ..., epoch: _Optional[int] = ..., oldest_epoch: _Optional[int] = ..., latency_windows: _Optional[_Iterable[_Union[LatencyWindow, _Mapping]]] = ..., snapshot_socket: _Optional[str] = ..., defers_answers: _Optional[bool] = ..., period_since_epoch: _Optional[int] = ..., period_total_latency: _Optional[_Union[LatencyHistogram, _Mapping]] = ..., period_device_latency: _Optional[_Union[LatencyHistogram, _Mapping]] = ..., models_revision: _Optional[int] = ..., tag: _Optional[str] = ..., core_memory: _Optional[_Iterable[_Union[CoreMemory, _Mapping]]] = ..., memory_revision: _Optional[int] = ...) -> None: ...

class NeuronCore(_message.Message):
    __slots__ = ("index", "device_index", "busy_seconds", "flops")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DEVICE_INDEX_FIELD_NUMBER: _ClassVar[int]
    BUSY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FLOPS_FIELD_NUMBER: _ClassVar[int]
    index: int
    device_index: int
    busy_seconds: float
    flops: float
    def __init__(self, index: _Optional[int] = ..., device_index: _Optional[int] = ..., busy_seconds: _Optional[float] = ..., flops: _Optional[float] = ...) -> None: ...

class MemoryUsage(_message.Message):
    __slots__ = ("host_bytes", "device_bytes", "host_categories", "device_categories")
    HOST_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_BYTES_FIELD_NUMBER: _ClassVar[int]
    HOST_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    host_bytes: int
    device_bytes: int
    host_categories: _containers.RepeatedCompositeFieldContainer[MemoryCategory]
    device_categories: _containers.RepeatedCompositeFieldContainer[MemoryCategory]
    def __init__(self, host_bytes: _Optional[int] = ..., device_bytes: _Optional[int] = ..., host_categories: _Optional[_Iterable[_Union[MemoryCategory, _Mapping]]] = ..., device_categories: _Optional[_Iterable[_Union[MemoryCategory, _Mapping]]] = ...) -> None: ...

class MemoryCategory(_message.Message):
    __slots__ = ("category", "bytes")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    category: str
    bytes: int
    def __init__(self, category: _Optional[str] = ..., bytes: _Optional[int] = ...) -> None: ...

class CoreMemory(_message.Message):
    __slots__ = ("core_index", "categories")
    CORE_INDEX_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    core_index: int
    categories: _containers.RepeatedCompositeFieldContainer[MemoryCategory]
    def __init__(self, core_index: _Optional[int] = ..., categories: _Optional[_Iterable[_Union[MemoryCategory, _Mapping]]] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("name", "uuid", "model_id", "is_running", "memory", "subgraphs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    IS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    SUBGRAPHS_FIELD_NUMBER: _ClassVar[int]
    name: str
    uuid: str
    model_id: int
    is_running: bool
    memory: MemoryUsage
    subgraphs: _containers.RepeatedCompositeFieldContainer[Subgraph]
    def __init__(self, name: _Optional[str] = ..., uuid: _Optional[str] = ..., model_id: _Optional[int] = ..., is_running: _Optional[bool] = ..., memory: _Optional[_Union[MemoryUsage, _Mapping]] = ..., subgraphs: _Optional[_Iterable[_Union[Subgraph, _Mapping]]] = ...) -> None: ...

class Subgraph(_message.Message):
    __slots__ = ("name", "memory", "neuroncore_index", "neuron_device_index")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    NEURONCORE_INDEX_FIELD_NUMBER: _ClassVar[int]
    NEURON_DEVICE_INDEX_FIELD_NUMBER: _ClassVar[int]
    name: str
    memory: MemoryUsage
    neuroncore_index: int
    neuron_device_index: int
    def __init__(self, name: _Optional[str] = ..., memory: _Optional[_Union[MemoryUsage, _Mapping]] = ..., neuroncore_index: _Optional[int] = ..., neuron_device_index: _Optional[int] = ...) -> None: ...

class CpuTime(_message.Message):
    __slots__ = ("user_seconds", "system_seconds")
    USER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_SECONDS_FIELD_NUMBER: _ClassVar[int]
    user_seconds: float
    system_seconds: float
    def __init__(self, user_seconds: _Optional[float] = ..., system_seconds: _Optional[float] = ...) -> None: ...

class InferenceTotals(_message.Message):
    __slots__ = ("completed", "completed_with_err", "completed_with_num_err", "timed_out", "incorrect_input", "failed_to_queue")
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_WITH_ERR_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_WITH_NUM_ERR_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    INCORRECT_INPUT_FIELD_NUMBER: _ClassVar[int]
    FAILED_TO_QUEUE_FIELD_NUMBER: _ClassVar[int]
    completed: int
    completed_with_err: int
    completed_with_num_err: int
    timed_out: int
    incorrect_input: int
    failed_to_queue: int
    def __init__(self, completed: _Optional[int] = ..., completed_with_err: _Optional[int] = ..., completed_with_num_err: _Optional[int] = ..., timed_out: _Optional[int] = ..., incorrect_input: _Optional[int] = ..., failed_to_queue: _Optional[int] = ...) -> None: ...

class ErrorTotals(_message.Message):
    __slots__ = ("generic", "numerical", "transient", "runtime", "hardware", "model")
    GENERIC_FIELD_NUMBER: _ClassVar[int]
    NUMERICAL_FIELD_NUMBER: _ClassVar[int]
    TRANSIENT_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    generic: int
    numerical: int
    transient: int
    runtime: int
    hardware: int
    model: int
    def __init__(self, generic: _Optional[int] = ..., numerical: _Optional[int] = ..., transient: _Optional[int] = ..., runtime: _Optional[int] = ..., hardware: _Optional[int] = ..., model: _Optional[int] = ...) -> None: ...

class LatencyHistogram(_message.Message):
    __slots__ = ("scale", "zero_count", "offset", "bucket_counts", "count", "sum", "min", "max")
    SCALE_FIELD_NUMBER: _ClassVar[int]
    ZERO_COUNT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    BUCKET_COUNTS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    scale: int
    zero_count: int
    offset: int
    bucket_counts: _containers.RepeatedScalarFieldContainer[int]
    count: int
    sum: float
    min: float
    max: float
    def __init__(self, scale: _Optional[int] = ..., zero_count: _Optional[int] = ..., offset: _Optional[int] = ..., bucket_counts: _Optional[_Iterable[int]] = ..., count: _Optional[int] = ..., sum: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ...) -> None: ...

class LatencyWindow(_message.Message):
    __slots__ = ("epoch", "total_min", "total_max", "device_min", "device_max")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MIN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MAX_FIELD_NUMBER: _ClassVar[int]
    DEVICE_MIN_FIELD_NUMBER: _ClassVar[int]
    DEVICE_MAX_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    total_min: float
    total_max: float
    device_min: float
    device_max: float
    def __init__(self, epoch: _Optional[int] = ..., total_min: _Optional[float] = ..., total_max: _Optional[float] = ..., device_min: _Optional[float] = ..., device_max: _Optional[float] = ...) -> None: ...

class DeviceEcc(_message.Message):
    __slots__ = ("device_index", "mem_ecc_corrected", "mem_ecc_uncorrected", "sram_ecc_uncorrected", "sram_ecc_corrected")
    DEVICE_INDEX_FIELD_NUMBER: _ClassVar[int]
    MEM_ECC_CORRECTED_FIELD_NUMBER: _ClassVar[int]
    MEM_ECC_UNCORRECTED_FIELD_NUMBER: _ClassVar[int]
    SRAM_ECC_UNCORRECTED_FIELD_NUMBER: _ClassVar[int]
    SRAM_ECC_CORRECTED_FIELD_NUMBER: _ClassVar[int]
    device_index: int
    mem_ecc_corrected: int
    mem_ecc_uncorrected: int
    sram_ecc_uncorrected: int
    sram_ecc_corrected: int
    def __init__(self, device_index: _Optional[int] = ..., mem_ecc_corrected: _Optional[int] = ..., mem_ecc_uncorrected: _Optional[int] = ..., sram_ecc_uncorrected: _Optional[int] = ..., sram_ecc_corrected: _Optional[int] = ...) -> None: ...

class GroundTruthRequest(_message.Message):
    __slots__ = ("mark",)
    MARK_FIELD_NUMBER: _ClassVar[int]
    mark: bool
    def __init__(self, mark: _Optional[bool] = ...) -> None: ...

class GroundTruth(_message.Message):
    __slots__ = ("inferences", "errors", "devices", "latency_count", "total_latencies", "device_latencies", "memory", "flops")
    INFERENCES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    LATENCY_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_LATENCIES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_LATENCIES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    FLOPS_FIELD_NUMBER: _ClassVar[int]
    inferences: InferenceTotals
    errors: ErrorTotals
    devices: _containers.RepeatedCompositeFieldContainer[DeviceEcc]
    latency_count: int
    total_latencies: _containers.RepeatedScalarFieldContainer[float]
    device_latencies: _containers.RepeatedScalarFieldContainer[float]
    memory: MemoryUsage
    flops: float
    def __init__(self, inferences: _Optional[_Union[InferenceTotals, _Mapping]] = ..., errors: _Optional[_Union[ErrorTotals, _Mapping]] = ..., devices: _Optional[_Iterable[_Union[DeviceEcc, _Mapping]]] = ..., latency_count: _Optional[int] = ..., total_latencies: _Optional[_Iterable[float]] = ..., device_latencies: _Optional[_Iterable[float]] = ..., memory: _Optional[_Union[MemoryUsage, _Mapping]] = ..., flops: _Optional[float] = ...) -> None: ...
