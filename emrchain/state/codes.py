"""Transaction result codes: one numbering for admission (the mempool) and block execution.

0 is "applied". 1..15 are the stateless verdicts of `emrchain.schema.verdicts.Verdict` with the
same numbers (a transaction in a block that fails decoding or its signature is recorded with its
verdict). 32 and up are stateful refusals. The numbers are stable API.
"""

from __future__ import annotations

from enum import IntEnum

from emrchain.schema.verdicts import Verdict

FIRST_STATEFUL_CODE = 32


class ResultCode(IntEnum):
    OK = 0
    NONCE_USED = 32
    NONCE_GAP = 33
    DUPLICATE_RECORD = 34
    NOT_A_VALIDATOR = 35
    STALE_EPOCH = 36
    DUPLICATE_APPROVAL = 37
    TOO_MANY_PROPOSALS = 38
    INVALID_VALIDATOR_SET = 39
    # EMR rules (`docs/spec/access-control.md`): who the sender is.
    NOT_A_MEMBER = 40
    KEY_ROTATED = 41
    MEMBER_REVOKED = 42
    ROLE_NOT_PERMITTED = 43
    NOT_AUTHORIZED = 44
    # Organisations and members.
    ORGANIZATION_NOT_FOUND = 45
    DUPLICATE_ORGANIZATION = 46
    ORGANIZATION_LIMIT_REACHED = 47
    KEY_IN_USE = 48
    INVALID_MEMBER_KEY = 49
    PATIENT_ID_MISMATCH = 50
    PATIENT_ID_IN_USE = 51
    MEMBER_LIMIT_REACHED = 52
    MEMBER_NOT_FOUND = 53
    MEMBER_ALREADY_REVOKED = 54
    LAST_ADMIN = 55
    INVALID_ROTATION_PROOF = 56
    KEY_HISTORY_FULL = 57
    # Records.
    PATIENT_NOT_REGISTERED = 58
    RECORD_LIMIT_REACHED = 59
    RECORD_NOT_FOUND = 60
    RECORD_ERASED = 61
    RECORD_PATIENT_MISMATCH = 62
    # Consent, access and break-glass.
    INVALID_GRANTEE = 63
    GRANTEE_NOT_FOUND = 64
    EXPIRY_NOT_IN_FUTURE = 65
    INVALID_WRAPPED_KEY = 66
    TOO_MANY_GRANTS = 67
    GRANT_NOT_FOUND = 68
    ACCESS_DENIED = 69
    GRANT_NOT_APPLICABLE = 70
    TOO_MANY_BREAK_GLASS = 71
    # Validators (after the EMR codes: the numbers are stable API).
    INVALID_VALIDATOR_KEY = 72
    # Node keys of validators and the node registry (`docs/spec/state.md` §4.2, §4.5).
    INVALID_NODE_KEY = 80
    INVALID_NODE_ADDRESS = 81
    NODE_ALREADY_REGISTERED = 82
    NODE_NOT_FOUND = 83
    NODE_LIMIT_REACHED = 84
    NODE_REGISTRY_FULL = 85
    INVALID_NODE_PROOF = 86
    NODE_KEY_OF_A_VALIDATOR = 87
    # Custody and erasure receipts (`docs/spec/records.md` §9), 90..99.
    INVALID_CUSTODY = 90
    CUSTODY_SET_MISMATCH = 91
    NOT_A_CUSTODIAN = 92
    RECORD_NOT_ERASED = 93
    DUPLICATE_RECEIPT = 94
    # Amendments and break-glass reviews (`docs/spec/access-control.md` §3.13, §3.14), 110..119.
    NOT_AUTHOR_ORGANIZATION = 110
    RECORD_ALREADY_SUPERSEDED = 111
    TOO_MANY_AMENDMENTS = 112
    REVIEW_NOT_FOUND = 113
    REVIEW_ALREADY_CLOSED = 114
    # Studies and research consent (`docs/spec/analytics.md`), 120..139.
    STUDY_NOT_FOUND = 120
    DUPLICATE_STUDY = 121
    STUDY_LIMIT_REACHED = 122
    INVALID_STUDY = 123
    NOT_A_PARTICIPANT = 124
    STUDY_ALREADY_APPROVED = 125
    STUDY_NOT_APPROVED = 126
    STUDY_EXPIRED = 127
    STUDY_CLOSED = 128
    NOT_STUDY_SPONSOR = 129
    QUERY_TYPE_NOT_ALLOWED = 130
    INVALID_QUERY = 131
    DUPLICATE_QUERY = 132
    QUERY_LIMIT_REACHED = 133
    PRIVACY_BUDGET_EXCEEDED = 134
    QUERY_NOT_FOUND = 135
    RESULT_ALREADY_ANCHORED = 136
    RESEARCH_CONSENT_LIMIT_REACHED = 137
    RESEARCH_CONSENT_UNCHANGED = 138


def code_name(code: int) -> str:
    """The symbolic name of any result code (stateless verdict or stateful)."""
    if code in ResultCode._value2member_map_:
        return ResultCode(code).name
    if code in Verdict._value2member_map_:
        return Verdict(code).name
    return f"UNKNOWN_{code}"
