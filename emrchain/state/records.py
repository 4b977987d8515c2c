"""The stored form of an anchored record (state value under `keys.record_key(record_id)`).

Encoding: patient_id hash | ciphertext_sha256 hash | cid bytes8[2..64] | record_type u8 |
size_bytes u64 | submitter key | height u64 | time_ms u64. The record id is the key, so it is
not repeated; height and time_ms are those of the block that anchored it (block time comes from
the header, never from a clock).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emrchain import schema
from emrchain.types.codec import DecodeError, EncodeError, Reader

_HEAD = struct.Struct(">32s32sB")
_TAIL = struct.Struct(">BQ32sQQ")
_CID_SPEC = next(
    spec for spec in schema.PAYLOAD_SCHEMAS[schema.TxKind.ANCHOR_RECORD] if spec.name == "cid"
)


@dataclass(frozen=True, slots=True)
class AnchorRecord:
    patient_id: bytes
    ciphertext_sha256: bytes
    cid: bytes
    record_type: int
    size_bytes: int
    submitter: bytes
    height: int
    time_ms: int

    @classmethod
    def from_fields(
        cls, fields: Mapping[str, Any], submitter: bytes, height: int, time_ms: int
    ) -> AnchorRecord:
        """Build from the decoded ANCHOR_RECORD payload fields (already schema-checked)."""
        return cls(
            patient_id=fields["patient_id"],
            ciphertext_sha256=fields["ciphertext_sha256"],
            cid=fields["cid"],
            record_type=int(fields["record_type"]),
            size_bytes=int(fields["size_bytes"]),
            submitter=submitter,
            height=height,
            time_ms=time_ms,
        )

    def encode(self) -> bytes:
        # struct instead of Writer: one anchor per transaction makes this a hot path.
        if not isinstance(self.cid, bytes) or not 0 <= len(self.cid) <= 0xFF:
            raise EncodeError("cid must be bytes of at most 255")
        for name in ("patient_id", "ciphertext_sha256", "submitter"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != 32:
                raise EncodeError(f"{name} must be 32 bytes")
        try:
            return (
                _HEAD.pack(self.patient_id, self.ciphertext_sha256, len(self.cid))
                + self.cid
                + _TAIL.pack(
                    self.record_type, self.size_bytes, self.submitter, self.height, self.time_ms
                )
            )
        except struct.error as error:
            raise EncodeError(f"AnchorRecord: {error}") from None

    @classmethod
    def decode(cls, data: bytes) -> AnchorRecord:
        reader = Reader(data, "AnchorRecord")
        patient_id = reader.fixed(32, "patient_id")
        ciphertext_sha256 = reader.fixed(32, "ciphertext_sha256")
        cid = reader.var_bytes(1, _CID_SPEC.maximum, "cid")
        if len(cid) < _CID_SPEC.minimum:
            raise DecodeError(f"AnchorRecord.cid: shorter than {_CID_SPEC.minimum} bytes")
        record = cls(
            patient_id=patient_id,
            ciphertext_sha256=ciphertext_sha256,
            cid=cid,
            record_type=reader.u8("record_type"),
            size_bytes=reader.u64("size_bytes"),
            submitter=reader.fixed(32, "submitter"),
            height=reader.u64("height"),
            time_ms=reader.u64("time_ms"),
        )
        reader.finish()
        return record
