"""FHIR R4 resources (plain dicts) from the API's JSON replies.

Each mapper takes the dict a record route answers (an anchor, a grant, an access event, a
member's account) and returns the resource. Identifiers are the chain's own: a record id, a
grant id (its GRANT_ACCESS transaction), an access event's transaction id, a member id and a
patient id are 64 lowercase hex characters, which is a valid FHIR id (`[A-Za-z0-9.-]{1,64}`),
and the same value under the `urn:emrchain:*` identifier systems below. Fields the consent
history and amendment routes add (a grant's `status`, a record's `status`, `supersedes`) are
used when present, so the mapping takes their replies as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from emrchain.schema import RecordType

FHIR_VERSION = "4.0.1"
FHIR_JSON = "application/fhir+json"
ENVELOPE_MEDIA_TYPE = "application/vnd.emrchain.record-envelope"
"""What a DocumentReference's attachment holds: the sealed envelope, not the plaintext."""
RECORD_SYSTEM = "urn:emrchain:record-id"
PATIENT_SYSTEM = "urn:emrchain:patient-id"
MEMBER_SYSTEM = "urn:emrchain:member-id"
ORGANIZATION_SYSTEM = "urn:emrchain:organization-id"
GRANT_SYSTEM = "urn:emrchain:grant-id"
TRANSACTION_SYSTEM = "urn:emrchain:tx-id"
CIPHERTEXT_SHA256_SYSTEM = "urn:emrchain:ciphertext-sha256"
CID_SYSTEM = "urn:emrchain:cid"
RECORD_TYPE_SYSTEM = "urn:emrchain:record-type"
BASIS_SYSTEM = "urn:emrchain:access-basis"
EVENT_KIND_SYSTEM = "urn:emrchain:event-kind"
ERROR_SYSTEM = "urn:emrchain:error"
TAG_SYSTEM = "urn:emrchain:tag"
V3_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V3_DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"
PROVENANCE_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
LOINC = "http://loinc.org"
NO_KEY_HEX = "0" * 64
PATIENT_BASES = ("patient", "reenrolled_patient")
"""Access bases whose actor is the patient itself (its AuditEvent agent is the Patient)."""


def instant(time_ms: int) -> str:
    """A FHIR instant (UTC, milliseconds) from Unix milliseconds, without floating point."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=time_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{time_ms % 1000:03d}Z"


def instant_ms(text: str) -> int:
    """Unix milliseconds of a FHIR instant this module wrote (the inverse of `instant`)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def reference(resource_type: str, resource_id: str) -> dict[str, Any]:
    return {"reference": f"{resource_type}/{resource_id}"}


def _identifier(system: str, value: str) -> dict[str, Any]:
    return {"system": system, "value": value}


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display is not None:
        coding["display"] = display
    return coding


def _concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    return {"coding": [_coding(system, code, display)]}


def _meta(last_updated_ms: int, *tags: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"lastUpdated": instant(last_updated_ms)}
    if tags:
        meta["tag"] = [_coding(TAG_SYSTEM, tag) for tag in tags]
    return meta


def record_type_name(value: Any) -> str:
    """A record type as its lower-case name, from the number the read route answers or the
    name the listings answer."""
    if isinstance(value, int) and not isinstance(value, bool):
        return RecordType(value).name.lower()
    return str(value).lower()


def member_reference(member_id: str, patient_id: str | None = None) -> dict[str, Any]:
    """A member as a FHIR actor: the patient it holds (a patient member), else a Practitioner."""
    if patient_id is not None and patient_id != NO_KEY_HEX:
        return reference("Patient", patient_id)
    return reference("Practitioner", member_id)


# ----------------------------------------------------------------------------------- members


def patient(
    patient_id: str, *, organization_id: str | None = None, active: bool = True
) -> dict[str, Any]:
    """The Patient behind a pseudonymous patient id; the chain knows nothing else of the
    person (no name, no birth date: those stay in the hospital's own systems)."""
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": [_identifier(PATIENT_SYSTEM, patient_id)],
        "active": active,
    }
    if organization_id:
        resource["managingOrganization"] = reference("Organization", organization_id)
    return resource


def practitioner(account: Mapping[str, Any]) -> dict[str, Any]:
    """A clinician, admin or auditor, from the `member` object of `GET /accounts/{key}`."""
    member_id = account["member_id"]
    return {
        "resourceType": "Practitioner",
        "id": member_id,
        "identifier": [_identifier(MEMBER_SYSTEM, member_id)],
        "active": bool(account["active"]),
        "qualification": [
            {
                "code": {"text": account["role"]},
                "issuer": reference("Organization", account["organization_id"]),
            }
        ],
    }


def organization(organization_id: str, name: str) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": organization_id,
        "identifier": [_identifier(ORGANIZATION_SYSTEM, organization_id)],
        "active": True,
        "name": name,
    }


# ----------------------------------------------------------------------------------- records


def _ciphertext_sha256(anchor: Mapping[str, Any]) -> str:
    value = anchor.get("ciphertext_sha256", anchor.get("content_sha256"))
    return str(value)


def _anchored_time_ms(anchor: Mapping[str, Any]) -> int:
    return int(anchor.get("anchored_time_ms", anchor.get("time_ms", 0)))


def document_status(anchor: Mapping[str, Any]) -> str:
    """current, superseded (an amendment replaced it) or entered-in-error (amended as an
    error, or erased: its content is deleted and it must not be relied on)."""
    status = anchor.get("status")
    if anchor.get("erased") or status == "entered-in-error":
        return "entered-in-error"
    return "superseded" if status == "superseded" else "current"


def document_reference(
    anchor: Mapping[str, Any], attachment_url: str | None, *, patient_id: str | None = None
) -> dict[str, Any]:
    """A record's anchor as a DocumentReference. The attachment is the sealed envelope (its
    media type says so) at `attachment_url`: the node's read route, which records an access
    event before it serves anything, or the exported file. An erased record has no
    attachment url and no CID, only its anchored hash."""
    record_id = anchor["record_id"]
    subject = patient_id or anchor["patient_id"]
    erased = bool(anchor.get("erased"))
    identifiers = [_identifier(CIPHERTEXT_SHA256_SYSTEM, _ciphertext_sha256(anchor))]
    if anchor.get("cid") and not erased:
        identifiers.append(_identifier(CID_SYSTEM, str(anchor["cid"])))
    attachment: dict[str, Any] = {"contentType": ENVELOPE_MEDIA_TYPE}
    if attachment_url is not None and not erased:
        attachment["url"] = attachment_url
    if anchor.get("size_bytes") is not None:
        attachment["size"] = int(anchor["size_bytes"])
    type_name = record_type_name(anchor["record_type"])
    time_ms = _anchored_time_ms(anchor)
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": record_id,
        "meta": _meta(
            int(anchor.get("erased_time_ms") or time_ms), *(["erased"] if erased else [])
        ),
        "masterIdentifier": _identifier(RECORD_SYSTEM, record_id),
        "identifier": identifiers,
        "status": document_status(anchor),
        "type": _concept(RECORD_TYPE_SYSTEM, type_name, type_name.replace("_", " ")),
        "subject": reference("Patient", subject),
        "date": instant(time_ms),
        "author": [
            reference("Practitioner", anchor["author"]),
            reference("Organization", anchor["author_organization"]),
        ],
        "custodian": reference("Organization", anchor["author_organization"]),
        "content": [{"attachment": attachment}],
    }
    if erased:
        reason = anchor.get("erasure_reason") or "erased"
        resource["description"] = f"erased ({reason}); only the anchored hash remains"
    replaced = replaced_record(anchor)
    if replaced is not None:
        resource["relatesTo"] = [
            {"code": "replaces", "target": reference("DocumentReference", replaced)}
        ]
    return resource


def replaced_record(anchor: Mapping[str, Any]) -> str | None:
    """The record this one directly amends: the first of the history's `supersedes` (which
    goes on back through the older ones; each of those is reached through its successor)."""
    supersedes = anchor.get("supersedes") or ()
    return str(supersedes[0]["record_id"]) if supersedes else None


def provenance(anchor: Mapping[str, Any]) -> dict[str, Any]:
    """Who anchored a record, for which organisation, when (and which records it amends)."""
    record_id = anchor["record_id"]
    time_ms = _anchored_time_ms(anchor)
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": record_id,
        "meta": _meta(time_ms),
        "target": [reference("DocumentReference", record_id)],
        "recorded": instant(time_ms),
        "activity": _concept(V3_DATA_OPERATION, "CREATE", "create"),
        "agent": [
            {
                "type": _concept(PROVENANCE_PARTICIPANT, "author", "Author"),
                "who": reference("Practitioner", anchor["author"]),
                "onBehalfOf": reference("Organization", anchor["author_organization"]),
            }
        ],
    }
    replaced = replaced_record(anchor)
    if replaced is not None:
        resource["entity"] = [
            {"role": "revision", "what": reference("DocumentReference", replaced)}
        ]
    return resource


# ------------------------------------------------------------------------------------ grants


def grant_status(grant: Mapping[str, Any], now_ms: int) -> str:
    """`active` while in force; `inactive` once revoked or expired."""
    status = grant.get("status")
    if status in ("revoked", "expired"):
        return "inactive"
    expires = int(grant.get("expires_at_ms", grant.get("expires_time_ms", 0)) or 0)
    return "inactive" if expires and now_ms >= expires else "active"


def _grantee_reference(grant: Mapping[str, Any]) -> dict[str, Any]:
    if grant["grantee_kind"] == "organization":
        organization_id = grant.get("grantee_organization") or grant.get("grantee")
        return reference("Organization", str(organization_id))
    member_id = grant.get("grantee_member") or grant.get("grantee")
    return reference("Practitioner", str(member_id))


def _granted_record(grant: Mapping[str, Any]) -> str | None:
    if grant["scope"] != "record":
        return None
    return str(grant.get("record_id") or grant.get("target"))


def consent(
    grant: Mapping[str, Any], now_ms: int, *, patient_id: str | None = None
) -> dict[str, Any]:
    """A grant as a Consent: the patient permits the grantee (a member, or an organisation's
    clinicians) to access one record or all of the patient's records, until its expiry.
    Revoked and expired grants are `inactive`, the revocation's time in `meta.lastUpdated`."""
    subject = patient_id or grant["patient_id"]
    granted_ms = int(grant.get("time_ms", grant.get("granted_time_ms", 0)))
    expires_ms = int(grant.get("expires_at_ms", grant.get("expires_time_ms", 0)) or 0)
    period: dict[str, Any] = {"start": instant(granted_ms)}
    if expires_ms:
        period["end"] = instant(expires_ms)
    provision: dict[str, Any] = {
        "type": "permit",
        "period": period,
        "actor": [
            {
                "role": _concept(V3_PARTICIPATION, "IRCP", "information recipient"),
                "reference": _grantee_reference(grant),
            }
        ],
        "action": [_concept(CONSENT_ACTION, "access", "Access")],
    }
    record_id = _granted_record(grant)
    if record_id is not None:
        provision["data"] = [
            {"meaning": "instance", "reference": reference("DocumentReference", record_id)}
        ]
    revoked_ms = grant.get("revoked_time_ms") or grant.get("ended_time_ms")
    status = grant_status(grant, now_ms)
    tags = [str(grant["status"])] if grant.get("status") in ("revoked", "expired") else []
    return {
        "resourceType": "Consent",
        "id": grant["grant_id"],
        "meta": _meta(int(revoked_ms or granted_ms), *tags),
        "identifier": [_identifier(GRANT_SYSTEM, grant["grant_id"])],
        "status": status,
        "scope": _concept(CONSENT_SCOPE, "patient-privacy", "Privacy Consent"),
        "category": [_concept(LOINC, "59284-0", "Patient Consent")],
        "patient": reference("Patient", subject),
        "dateTime": instant(granted_ms),
        "performer": [reference("Patient", subject)],
        "policyRule": _concept(V3_ACT_CODE, "OPTIN", "opt-in"),
        "provision": provision,
    }


# ------------------------------------------------------------------------------------ events


def _event_purpose(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    if event["kind"] == "break_glass" or event["basis"] == "break_glass":
        return [_concept(V3_ACT_REASON, "ETREAT", "Emergency Treatment")]
    return []


def audit_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """An access-trail entry as an AuditEvent: a served read (action R), a break-glass
    declaration with its reason, or a re-enrolment. Break-glass events and reads under it
    carry purpose ETREAT; everything flagged for review is tagged `flagged-for-review`."""
    patient_id = event["patient_id"]
    actor_is_patient = event["kind"] == "access" and event["basis"] in PATIENT_BASES
    who = member_reference(event["actor"], patient_id if actor_is_patient else None)
    agent: dict[str, Any] = {
        "who": who,
        "requestor": True,
        "policy": [f"{BASIS_SYSTEM}:{event['basis']}"],
    }
    purpose = _event_purpose(event)
    if purpose:
        agent["purposeOfUse"] = purpose
    entities: list[dict[str, Any]] = [
        {
            "what": reference("Patient", patient_id),
            "role": _coding("http://terminology.hl7.org/CodeSystem/object-role", "1", "Patient"),
        },
        {
            "what": {"identifier": _identifier(TRANSACTION_SYSTEM, event["event_id"])},
            "detail": [{"type": "height", "valueString": str(event["height"])}],
        },
    ]
    if event["record_id"] != NO_KEY_HEX:
        entities.append({"what": reference("DocumentReference", event["record_id"])})
    if event["basis"] == "grant" and event["grant_id"] != NO_KEY_HEX:
        entities.append({"what": reference("Consent", event["grant_id"])})
    if event.get("reason"):
        entities[1]["detail"].append({"type": "reason", "valueString": event["reason"]})
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": event["event_id"],
        "meta": _meta(
            int(event["time_ms"]),
            *(["flagged-for-review"] if event.get("flagged_for_review") else []),
        ),
        "type": _coding(DICOM, "110110", "Patient Record"),
        "subtype": [_coding(EVENT_KIND_SYSTEM, event["kind"])],
        "action": "R" if event["kind"] == "access" else "E",
        "recorded": instant(int(event["time_ms"])),
        "outcome": "0",
        "agent": [agent],
        "source": {"observer": reference("Organization", event["actor_organization"])},
        "entity": entities,
    }
    if purpose:
        resource["purposeOfEvent"] = purpose
    return resource


# ------------------------------------------------------------------------- bundles, outcomes


def operation_outcome(issue_code: str, code: str, message: str) -> dict[str, Any]:
    """An error as an OperationOutcome: the FHIR `issue_code` (not-found, invalid, ...), the
    node's own error code in `details`, its message in `diagnostics`."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": issue_code,
                "details": {"coding": [_coding(ERROR_SYSTEM, code)], "text": message},
                "diagnostics": message,
            }
        ],
    }


def searchset(
    resources: Sequence[Mapping[str, Any]], base_url: str, total: int | None
) -> dict[str, Any]:
    """A search's page: `total` is how many matched (None: not counted, left out),
    `resources` the ones returned."""
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    return bundle | {
        "entry": [
            {
                "fullUrl": f"{base_url}/fhir/{resource['resourceType']}/{resource['id']}",
                "resource": dict(resource),
                "search": {"mode": "match"},
            }
            for resource in resources
        ],
    }


def collection(
    entries: Sequence[tuple[str, Mapping[str, Any]]], bundle_id: str, time_ms: int
) -> dict[str, Any]:
    """A collection Bundle (the patient's export) of `(fullUrl, resource)` entries."""
    return {
        "resourceType": "Bundle",
        "id": bundle_id,
        "type": "collection",
        "timestamp": instant(time_ms),
        "entry": [
            {"fullUrl": full_url, "resource": dict(resource)} for full_url, resource in entries
        ],
    }


def full_url(resource: Mapping[str, Any]) -> str:
    """Where a mapped resource stands in an exported Bundle: its type and id under
    `urn:emrchain:` (a resource's ids are the chain's, unique per type)."""
    return f"urn:emrchain:{resource['resourceType']}:{resource['id']}"
