"""`EmrApplication`: the application every node runs — the block pipeline
(`emrchain/state/pipeline.py`: envelope, signature, nonce, handler, app hash) with the EMR
handler table and the compiled ANCHOR_RECORD accept path. Genesis organisations and their
admins are passed to `init_chain` as `organizations=` (see `emrchain.state.emr.genesis`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from emrchain import _core
from emrchain.schema import TxKind
from emrchain.state import keys
from emrchain.state.application import (
    AcceptPath,
    ApplicationRules,
    BlockExecutionError,
    Handler,
)
from emrchain.state.emr import clinical
from emrchain.state.emr.custody import author_is_sole_custodian
from emrchain.state.emr.genesis import GenesisOrganization, genesis_writes
from emrchain.state.emr.handlers import EMR_HANDLERS
from emrchain.state.pipeline import BlockPipeline
from emrchain.state.result import ExecutionResult, TxResult
from emrchain.state.view import CommittedState
from emrchain.types.limits import DEFAULT_LIMITS, Limits
from emrchain.types.validator import ValidatorSet


class EmrApplication(BlockPipeline):
    """Organisations, members, anchors, consent, audit and validator updates."""

    ABSENCE_FILTERED_PREFIXES = (keys.EMR_RECORD_PREFIX,)
    """State keyspaces read mostly for keys never written (each ANCHOR_RECORD looks up its
    new record id), for the store's absence filter."""

    def __init__(
        self,
        chain_id: bytes,
        committed: CommittedState,
        *,
        limits: Limits = DEFAULT_LIMITS,
        rules: ApplicationRules | None = None,
        handlers: Mapping[TxKind, Handler] = EMR_HANDLERS,
        signature_threads: int = 0,
        anchor_path: bool = True,
    ) -> None:
        """`anchor_path=False` turns off the compiled ANCHOR_RECORD accept path (results and
        state are the same either way; tests compare the two). The path is used only while
        the table maps ANCHOR_RECORD to the EMR rule it implements."""
        accept_path = None
        if anchor_path and handlers.get(TxKind.ANCHOR_RECORD) is clinical.anchor_record:
            accept_path = AcceptPath(
                _core.AnchorPath(
                    int(TxKind.ANCHOR_RECORD),
                    keys.NONCE_PREFIX,
                    keys.EMR_RECORD_PREFIX,
                    keys.PATIENT_PREFIX,
                    keys.RECORD_CUSTODY_PREFIX,
                    keys.PATIENT_RECORDS_PREFIX,
                    clinical.MAX_RECORDS_PER_PATIENT,  # the limit the rule reads
                    TxResult,
                ),
                clinical.anchor_author,
                # Read per block (one lookup): k is written by the genesis only, but a node may
                # be built before its genesis runs.
                author_is_sole_custodian,
            )
        super().__init__(
            chain_id,
            committed,
            limits=limits,
            rules=rules,
            handlers=handlers,
            signature_threads=signature_threads,
            accept_path=accept_path,
            implied_absent=custody_of_a_new_record,
        )

    def init_chain(
        self,
        validators: ValidatorSet,
        genesis_time_ms: int,
        *,
        organizations: Sequence[GenesisOrganization] = (),
        custody_set_size: int | None = None,
    ) -> ExecutionResult:
        """Genesis state: the pipeline's (progress, the validator sets of heights 1 and 2) and
        the genesis `organizations` with their admins (registration starts with them), and the
        custody set size k when the genesis sets one (`records.md` §9)."""
        self.check_genesis(validators, genesis_time_ms)  # the pipeline's checks come first
        try:
            organization_writes = genesis_writes(
                organizations, genesis_time_ms, custody_set_size
            )
        except ValueError as error:
            raise BlockExecutionError(f"genesis organisations are invalid: {error}") from None
        return self.genesis_result(validators, genesis_time_ms, organization_writes)


def custody_of_a_new_record(key: bytes, reads: Mapping[bytes, bytes | None]) -> bool:
    """A record's custody entry (`0x31 | record id`) is written once, by the block that anchors
    the record (`clinical.anchor_record` and the compiled accept path, both after finding no
    record entry) and never changed or deleted: so when execution found no record entry, the
    custody entry was absent too. Saves the undo record a read per anchor."""
    return (
        key[:1] == keys.RECORD_CUSTODY_PREFIX
        # A default that is not None: a record entry execution did not read proves nothing.
        and reads.get(keys.EMR_RECORD_PREFIX + key[1:], b"") is None
    )
