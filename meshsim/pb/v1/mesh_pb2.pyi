from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ProcessRequest(_message.Message):
    __slots__ = ("request_id", "data")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    data: str
    def __init__(self, request_id: _Optional[str] = ..., data: _Optional[str] = ...) -> None: ...

class ProcessResponse(_message.Message):
    __slots__ = ("request_id", "result", "replica", "deadline_remaining_s")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_REMAINING_S_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    result: str
    replica: str
    deadline_remaining_s: float
    def __init__(self, request_id: _Optional[str] = ..., result: _Optional[str] = ..., replica: _Optional[str] = ..., deadline_remaining_s: _Optional[float] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("stream_id", "event_types", "count")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    event_types: _containers.RepeatedScalarFieldContainer[str]
    count: int
    def __init__(self, stream_id: _Optional[str] = ..., event_types: _Optional[_Iterable[str]] = ..., count: _Optional[int] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("stream_id", "event_type", "sequence", "replica")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    event_type: str
    sequence: int
    replica: str
    def __init__(self, stream_id: _Optional[str] = ..., event_type: _Optional[str] = ..., sequence: _Optional[int] = ..., replica: _Optional[str] = ...) -> None: ...

class Metric(_message.Message):
    __slots__ = ("metric_name", "value")
    METRIC_NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    metric_name: str
    value: float
    def __init__(self, metric_name: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class MetricsSummary(_message.Message):
    __slots__ = ("count", "sum", "min", "max", "mean", "replica")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    count: int
    sum: float
    min: float
    max: float
    mean: float
    replica: str
    def __init__(self, count: _Optional[int] = ..., sum: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., mean: _Optional[float] = ..., replica: _Optional[str] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("user_id", "message", "replica")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    message: str
    replica: str
    def __init__(self, user_id: _Optional[str] = ..., message: _Optional[str] = ..., replica: _Optional[str] = ...) -> None: ...
