"""The EMR handler table: every transaction kind with its access-control rules.

VALIDATOR_UPDATE takes the chain's approval rule (`emrchain/state/validator_updates.py`):
validators, not members, send it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from emrchain.schema import TxKind
from emrchain.state.application import Handler
from emrchain.state.emr.amendments import amend_record
from emrchain.state.emr.clinical import (
    access_event,
    anchor_record,
    break_glass,
    erase_record,
    erasure_receipt,
)
from emrchain.state.emr.consent import grant_access, revoke_access
from emrchain.state.emr.membership import (
    register_member,
    register_organization,
    revoke_member,
    rotate_key,
)
from emrchain.state.emr.nodes import register_node, remove_node
from emrchain.state.emr.reviews import close_review
from emrchain.state.emr.studies import (
    approve_study,
    close_study,
    propose_study,
    research_consent,
    study_query,
    study_result,
)
from emrchain.state.validator_updates import validator_update

EMR_HANDLERS: Mapping[TxKind, Handler] = MappingProxyType(
    {
        TxKind.REGISTER_ORGANIZATION: register_organization,
        TxKind.REGISTER_MEMBER: register_member,
        TxKind.REVOKE_MEMBER: revoke_member,
        TxKind.ROTATE_KEY: rotate_key,
        TxKind.ANCHOR_RECORD: anchor_record,
        TxKind.GRANT_ACCESS: grant_access,
        TxKind.REVOKE_ACCESS: revoke_access,
        TxKind.ACCESS_EVENT: access_event,
        TxKind.BREAK_GLASS: break_glass,
        TxKind.ERASE_RECORD: erase_record,
        TxKind.VALIDATOR_UPDATE: validator_update,
        TxKind.REGISTER_NODE: register_node,
        TxKind.REMOVE_NODE: remove_node,
        TxKind.ERASURE_RECEIPT: erasure_receipt,
        TxKind.AMEND_RECORD: amend_record,
        TxKind.CLOSE_REVIEW: close_review,
        TxKind.PROPOSE_STUDY: propose_study,
        TxKind.APPROVE_STUDY: approve_study,
        TxKind.STUDY_QUERY: study_query,
        TxKind.STUDY_RESULT: study_result,
        TxKind.CLOSE_STUDY: close_study,
        TxKind.RESEARCH_CONSENT: research_consent,
    }
)
"""Every kind's handler under the EMR rules (`docs/spec/access-control.md`)."""
