"""The EMR rules: organisations, members and roles, record anchors, consent, access audit,
break-glass and erasure (`docs/spec/access-control.md`), and pure queries over their state.

`EMR_HANDLERS` is the handler table; `EmrApplication` runs it. The query functions read a
StateView and never write; the RPC layer calls them.
"""

from emrchain.state.emr.access import Decision, list_decision, read_decision
from emrchain.state.emr.application import EmrApplication
from emrchain.state.emr.audit import AccessBasis, AccessEvent, AccessTrail, EventKind
from emrchain.state.emr.entities import (
    NO_KEY,
    KeyHistoryEntry,
    Member,
    MemberStatus,
    Organization,
)
from emrchain.state.emr.genesis import GenesisAdmin, GenesisOrganization
from emrchain.state.emr.handlers import EMR_HANDLERS
from emrchain.state.emr.membership import rotation_message
from emrchain.state.emr.queries import (
    MemberView,
    access_events_for,
    break_glass_reviews,
    grants_for,
    is_erased,
    key_history,
    member,
    organisation,
    record,
    record_amendments,
)
from emrchain.state.emr.records import BreakGlassSession, EmrRecord, Grant

__all__ = [
    "EMR_HANDLERS",
    "NO_KEY",
    "AccessBasis",
    "AccessEvent",
    "AccessTrail",
    "BreakGlassSession",
    "Decision",
    "EmrApplication",
    "EmrRecord",
    "EventKind",
    "GenesisAdmin",
    "GenesisOrganization",
    "Grant",
    "KeyHistoryEntry",
    "Member",
    "MemberStatus",
    "MemberView",
    "Organization",
    "access_events_for",
    "break_glass_reviews",
    "grants_for",
    "is_erased",
    "key_history",
    "list_decision",
    "member",
    "organisation",
    "read_decision",
    "record",
    "record_amendments",
    "rotation_message",
]
