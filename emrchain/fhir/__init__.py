"""FHIR R4 views of what the chain holds (`docs/spec/fhir.md`).

Pure functions from the API's JSON replies (the dicts the record routes answer and the client
receives) to FHIR R4 resources as plain dicts: `resources.py` maps anchors to DocumentReference,
grants to Consent, access events to AuditEvent, authorship to Provenance and members to
Patient, Practitioner and Organization; `search.py` parses and applies the search parameters.
The node (`emrchain/rpc/fhir.py`) and the client's patient export (`emrchain/client/export.py`)
both build their resources here, so the two never disagree. No medical data passes through:
a DocumentReference points at the sealed ciphertext, which only a reader's client opens.
"""
