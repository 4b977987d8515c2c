"""Deterministic execution: reads state through views, returns writes, an app hash, results
and validator updates. No clock, randomness or I/O (`docs/spec/state.md`)."""

from emrchain.state.application import (
    Application,
    ApplicationRules,
    BlockContext,
    BlockExecutionError,
    Handler,
)
from emrchain.state.codes import ResultCode, code_name
from emrchain.state.emr import EMR_HANDLERS, EmrApplication
from emrchain.state.handlers import DEFAULT_HANDLERS
from emrchain.state.memory import MemoryState
from emrchain.state.nonce_anchor import NonceAnchorApplication, read_progress
from emrchain.state.records import AnchorRecord
from emrchain.state.result import (
    GENESIS_PREVIOUS_APP_HASH,
    ExecutionResult,
    TxResult,
    compute_app_hash,
    decode_writes,
    encode_writes,
)
from emrchain.state.validators import (
    StateCorruptionError,
    ValidatorUpdateError,
    apply_validator_updates,
    read_validator_sets,
)
from emrchain.state.view import (
    CommittedState,
    OverlayStateView,
    StateLimitError,
    StateView,
)

__all__ = [
    "DEFAULT_HANDLERS",
    "EMR_HANDLERS",
    "GENESIS_PREVIOUS_APP_HASH",
    "AnchorRecord",
    "Application",
    "ApplicationRules",
    "BlockContext",
    "BlockExecutionError",
    "CommittedState",
    "EmrApplication",
    "ExecutionResult",
    "Handler",
    "MemoryState",
    "NonceAnchorApplication",
    "OverlayStateView",
    "ResultCode",
    "StateCorruptionError",
    "StateLimitError",
    "StateView",
    "TxResult",
    "ValidatorUpdateError",
    "apply_validator_updates",
    "code_name",
    "compute_app_hash",
    "decode_writes",
    "encode_writes",
    "read_progress",
    "read_validator_sets",
]
