"""Record custody on a node: ciphertext storage, cached reads, data-key custody and erasure."""

from emrchain.records.service import RecordService, StoredCiphertext, open_record_service

__all__ = ["RecordService", "StoredCiphertext", "open_record_service"]
