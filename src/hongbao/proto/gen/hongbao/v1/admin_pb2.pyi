from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REGION_STATE_UNSPECIFIED: _ClassVar[RegionState]
    REGION_STATE_ACTIVE: _ClassVar[RegionState]
    REGION_STATE_DRAINING: _ClassVar[RegionState]
    REGION_STATE_DRAINED: _ClassVar[RegionState]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_FOLLOWER: _ClassVar[Role]
    ROLE_PRE_CANDIDATE: _ClassVar[Role]
    ROLE_CANDIDATE: _ClassVar[Role]
    ROLE_LEADER: _ClassVar[Role]

class ProgressState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROGRESS_STATE_UNSPECIFIED: _ClassVar[ProgressState]
    PROGRESS_STATE_PROBE: _ClassVar[ProgressState]
    PROGRESS_STATE_REPLICATE: _ClassVar[ProgressState]
    PROGRESS_STATE_SNAPSHOT: _ClassVar[ProgressState]
REGION_STATE_UNSPECIFIED: RegionState
REGION_STATE_ACTIVE: RegionState
REGION_STATE_DRAINING: RegionState
REGION_STATE_DRAINED: RegionState
ROLE_UNSPECIFIED: Role
ROLE_FOLLOWER: Role
ROLE_PRE_CANDIDATE: Role
ROLE_CANDIDATE: Role
ROLE_LEADER: Role
PROGRESS_STATE_UNSPECIFIED: ProgressState
PROGRESS_STATE_PROBE: ProgressState
PROGRESS_STATE_REPLICATE: ProgressState
PROGRESS_STATE_SNAPSHOT: ProgressState

class RegionStatus(_message.Message):
    __slots__ = ("name", "state", "since_ms", "deadline_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: RegionState
    since_ms: int
    deadline_ms: int
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[RegionState, str]] = ..., since_ms: _Optional[int] = ..., deadline_ms: _Optional[int] = ...) -> None: ...

class ClusterStateRequest(_message.Message):
    __slots__ = ("linearizable",)
    LINEARIZABLE_FIELD_NUMBER: _ClassVar[int]
    linearizable: bool
    def __init__(self, linearizable: _Optional[bool] = ...) -> None: ...

class ClusterStateResponse(_message.Message):
    __slots__ = ("cluster_id", "version", "regions", "meta_leader_node_id", "answered_by_node_id", "age_ms")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    META_LEADER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    AGE_MS_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    version: int
    regions: _containers.RepeatedCompositeFieldContainer[RegionStatus]
    meta_leader_node_id: int
    answered_by_node_id: int
    age_ms: int
    def __init__(self, cluster_id: _Optional[str] = ..., version: _Optional[int] = ..., regions: _Optional[_Iterable[_Union[RegionStatus, _Mapping]]] = ..., meta_leader_node_id: _Optional[int] = ..., answered_by_node_id: _Optional[int] = ..., age_ms: _Optional[int] = ...) -> None: ...

class SetRegionStateRequest(_message.Message):
    __slots__ = ("region", "state", "expected_version", "deadline_ms")
    REGION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    region: str
    state: RegionState
    expected_version: int
    deadline_ms: int
    def __init__(self, region: _Optional[str] = ..., state: _Optional[_Union[RegionState, str]] = ..., expected_version: _Optional[int] = ..., deadline_ms: _Optional[int] = ...) -> None: ...

class TopologyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TopologyResponse(_message.Message):
    __slots__ = ("toml", "cluster_id", "source")
    TOML_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    toml: str
    cluster_id: str
    source: str
    def __init__(self, toml: _Optional[str] = ..., cluster_id: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class ShardAuditRequest(_message.Message):
    __slots__ = ("shard_id",)
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    def __init__(self, shard_id: _Optional[int] = ...) -> None: ...

class ShardAuditResponse(_message.Message):
    __slots__ = ("shard_id", "applied_index", "balances_fen", "escrow_fen", "deposits_fen", "withdrawals_fen", "outbox_entries", "outbox_fen", "accounts", "negative_balances", "problems")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    BALANCES_FEN_FIELD_NUMBER: _ClassVar[int]
    ESCROW_FEN_FIELD_NUMBER: _ClassVar[int]
    DEPOSITS_FEN_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWALS_FEN_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_FEN_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_BALANCES_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    applied_index: int
    balances_fen: int
    escrow_fen: int
    deposits_fen: int
    withdrawals_fen: int
    outbox_entries: int
    outbox_fen: int
    accounts: int
    negative_balances: int
    problems: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, shard_id: _Optional[int] = ..., applied_index: _Optional[int] = ..., balances_fen: _Optional[int] = ..., escrow_fen: _Optional[int] = ..., deposits_fen: _Optional[int] = ..., withdrawals_fen: _Optional[int] = ..., outbox_entries: _Optional[int] = ..., outbox_fen: _Optional[int] = ..., accounts: _Optional[int] = ..., negative_balances: _Optional[int] = ..., problems: _Optional[_Iterable[str]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("shard_ids",)
    SHARD_IDS_FIELD_NUMBER: _ClassVar[int]
    shard_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, shard_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("node_id", "region", "address", "started_at_ms", "now_ms", "version", "shards", "cluster_id", "region_state", "cluster_state_version", "meta_group")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    NOW_MS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_STATE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    META_GROUP_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    region: str
    address: str
    started_at_ms: int
    now_ms: int
    version: str
    shards: _containers.RepeatedCompositeFieldContainer[ShardStatus]
    cluster_id: str
    region_state: RegionState
    cluster_state_version: int
    meta_group: ShardStatus
    def __init__(self, node_id: _Optional[int] = ..., region: _Optional[str] = ..., address: _Optional[str] = ..., started_at_ms: _Optional[int] = ..., now_ms: _Optional[int] = ..., version: _Optional[str] = ..., shards: _Optional[_Iterable[_Union[ShardStatus, _Mapping]]] = ..., cluster_id: _Optional[str] = ..., region_state: _Optional[_Union[RegionState, str]] = ..., cluster_state_version: _Optional[int] = ..., meta_group: _Optional[_Union[ShardStatus, _Mapping]] = ...) -> None: ...

class ShardStatus(_message.Message):
    __slots__ = ("shard_id", "role", "term", "leader_node_id", "commit_index", "applied_index", "last_index", "snapshot_index", "apply_lag_entries", "log_lag_entries_max", "voters", "learners", "lead_transferee_node_id", "progress")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LEADER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLY_LAG_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    LOG_LAG_ENTRIES_MAX_FIELD_NUMBER: _ClassVar[int]
    VOTERS_FIELD_NUMBER: _ClassVar[int]
    LEARNERS_FIELD_NUMBER: _ClassVar[int]
    LEAD_TRANSFEREE_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    role: Role
    term: int
    leader_node_id: int
    commit_index: int
    applied_index: int
    last_index: int
    snapshot_index: int
    apply_lag_entries: int
    log_lag_entries_max: int
    voters: _containers.RepeatedScalarFieldContainer[int]
    learners: _containers.RepeatedScalarFieldContainer[int]
    lead_transferee_node_id: int
    progress: _containers.RepeatedCompositeFieldContainer[ReplicaProgress]
    def __init__(self, shard_id: _Optional[int] = ..., role: _Optional[_Union[Role, str]] = ..., term: _Optional[int] = ..., leader_node_id: _Optional[int] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., last_index: _Optional[int] = ..., snapshot_index: _Optional[int] = ..., apply_lag_entries: _Optional[int] = ..., log_lag_entries_max: _Optional[int] = ..., voters: _Optional[_Iterable[int]] = ..., learners: _Optional[_Iterable[int]] = ..., lead_transferee_node_id: _Optional[int] = ..., progress: _Optional[_Iterable[_Union[ReplicaProgress, _Mapping]]] = ...) -> None: ...

class ReplicaProgress(_message.Message):
    __slots__ = ("node_id", "match_index", "next_index", "lag_entries", "state", "recent_active", "learner")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    MATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    NEXT_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAG_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RECENT_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    LEARNER_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    match_index: int
    next_index: int
    lag_entries: int
    state: ProgressState
    recent_active: bool
    learner: bool
    def __init__(self, node_id: _Optional[int] = ..., match_index: _Optional[int] = ..., next_index: _Optional[int] = ..., lag_entries: _Optional[int] = ..., state: _Optional[_Union[ProgressState, str]] = ..., recent_active: _Optional[bool] = ..., learner: _Optional[bool] = ...) -> None: ...

class TransferLeaderRequest(_message.Message):
    __slots__ = ("shard_id", "target_node_id", "wait_ms")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    target_node_id: int
    wait_ms: int
    def __init__(self, shard_id: _Optional[int] = ..., target_node_id: _Optional[int] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class TransferLeaderResponse(_message.Message):
    __slots__ = ("leader_node_id", "term")
    LEADER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    leader_node_id: int
    term: int
    def __init__(self, leader_node_id: _Optional[int] = ..., term: _Optional[int] = ...) -> None: ...
