"""Deterministic execution: reads state through views, returns writes, an app hash, results
and validator updates. No clock, randomness or I/O (`docs/spec/state.md`).

This package is the block pipeline and what it stands on (views, the app hash, results, the
validator sets, the progress record, the key layout); the rules of the EMR application, which
the node runs, are in `emrchain.state.emr`, a layer above that this package never imports.
"""

from emrchain.state.application import (
    ApplicationRules,
    BlockContext,
    BlockExecutionError,
    Handler,
)
from emrchain.state.codes import ResultCode, code_name
from emrchain.state.memory import MemoryState
from emrchain.state.pipeline import BlockPipeline
from emrchain.state.progress import read_progress
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
    "GENESIS_PREVIOUS_APP_HASH",
    "ApplicationRules",
    "BlockContext",
    "BlockExecutionError",
    "BlockPipeline",
    "CommittedState",
    "ExecutionResult",
    "Handler",
    "MemoryState",
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
