from hongbao.proto.gen.hongbao.v1 import raft_pb2 as _raft_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SnapshotChunkStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SNAPSHOT_CHUNK_STATUS_UNSPECIFIED: _ClassVar[SnapshotChunkStatus]
    SNAPSHOT_CHUNK_STATUS_ACCEPTED: _ClassVar[SnapshotChunkStatus]
    SNAPSHOT_CHUNK_STATUS_COMPLETE: _ClassVar[SnapshotChunkStatus]
    SNAPSHOT_CHUNK_STATUS_REJECTED: _ClassVar[SnapshotChunkStatus]
SNAPSHOT_CHUNK_STATUS_UNSPECIFIED: SnapshotChunkStatus
SNAPSHOT_CHUNK_STATUS_ACCEPTED: SnapshotChunkStatus
SNAPSHOT_CHUNK_STATUS_COMPLETE: SnapshotChunkStatus
SNAPSHOT_CHUNK_STATUS_REJECTED: SnapshotChunkStatus

class DeliverRequest(_message.Message):
    __slots__ = ("cluster_id", "from_node_id", "source_shard", "destination_shard", "commands")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SHARD_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_SHARD_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    from_node_id: int
    source_shard: int
    destination_shard: int
    commands: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, cluster_id: _Optional[str] = ..., from_node_id: _Optional[int] = ..., source_shard: _Optional[int] = ..., destination_shard: _Optional[int] = ..., commands: _Optional[_Iterable[bytes]] = ...) -> None: ...

class DeliverResponse(_message.Message):
    __slots__ = ("applied_seq",)
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    applied_seq: int
    def __init__(self, applied_seq: _Optional[int] = ...) -> None: ...

class RaftBatch(_message.Message):
    __slots__ = ("cluster_id", "from_node_id", "to_node_id", "batch_seq", "messages", "snapshot_chunks")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TO_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SEQ_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    from_node_id: int
    to_node_id: int
    batch_seq: int
    messages: _containers.RepeatedCompositeFieldContainer[ShardMessage]
    snapshot_chunks: _containers.RepeatedCompositeFieldContainer[SnapshotChunk]
    def __init__(self, cluster_id: _Optional[str] = ..., from_node_id: _Optional[int] = ..., to_node_id: _Optional[int] = ..., batch_seq: _Optional[int] = ..., messages: _Optional[_Iterable[_Union[ShardMessage, _Mapping]]] = ..., snapshot_chunks: _Optional[_Iterable[_Union[SnapshotChunk, _Mapping]]] = ...) -> None: ...

class ShardMessage(_message.Message):
    __slots__ = ("shard_id", "message")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    message: _raft_pb2.Message
    def __init__(self, shard_id: _Optional[int] = ..., message: _Optional[_Union[_raft_pb2.Message, _Mapping]] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("shard_id", "snapshot_index", "snapshot_term", "offset", "data", "last", "total_size_bytes", "crc32", "message")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_INDEX_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_TERM_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CRC32_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    snapshot_index: int
    snapshot_term: int
    offset: int
    data: bytes
    last: bool
    total_size_bytes: int
    crc32: int
    message: _raft_pb2.Message
    def __init__(self, shard_id: _Optional[int] = ..., snapshot_index: _Optional[int] = ..., snapshot_term: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., last: _Optional[bool] = ..., total_size_bytes: _Optional[int] = ..., crc32: _Optional[int] = ..., message: _Optional[_Union[_raft_pb2.Message, _Mapping]] = ...) -> None: ...

class RaftAck(_message.Message):
    __slots__ = ("batch_seq", "snapshot_acks")
    BATCH_SEQ_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_ACKS_FIELD_NUMBER: _ClassVar[int]
    batch_seq: int
    snapshot_acks: _containers.RepeatedCompositeFieldContainer[SnapshotChunkAck]
    def __init__(self, batch_seq: _Optional[int] = ..., snapshot_acks: _Optional[_Iterable[_Union[SnapshotChunkAck, _Mapping]]] = ...) -> None: ...

class SnapshotChunkAck(_message.Message):
    __slots__ = ("shard_id", "snapshot_index", "snapshot_term", "next_offset", "status", "message")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_INDEX_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_TERM_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    snapshot_index: int
    snapshot_term: int
    next_offset: int
    status: SnapshotChunkStatus
    message: str
    def __init__(self, shard_id: _Optional[int] = ..., snapshot_index: _Optional[int] = ..., snapshot_term: _Optional[int] = ..., next_offset: _Optional[int] = ..., status: _Optional[_Union[SnapshotChunkStatus, str]] = ..., message: _Optional[str] = ...) -> None: ...
