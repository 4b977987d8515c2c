"""An amendment's new record is a record like any anchored one for the node's copies
(`docs/spec/records.md` §11): replication wants its CID, and the erasure worker finds the CID in
its AMEND_RECORD's block, on a real EMR chain."""

from __future__ import annotations

import hashlib
from pathlib import Path

from emrchain.records.erasure import anchored_cid
from emrchain.records.replication import AUTHORED, Replicator
from emrchain.schema import AmendmentReason, TxKind
from emrchain.storage.cid import cid_bytes_to_text
from emrchain.storage.local import LocalBlobStore
from tests.state.chain import CHAIN_ID
from tests.state.emr.world import A_COLLEAGUE, HOSPITAL_A, RECORD, World, digest


def test_replication_and_erasure_read_an_amendment_as_an_anchor(tmp_path: Path) -> None:
    world = World()
    new_id = digest("record/1-addendum")
    fields = world.anchor_fields(new_id)
    fields.update(supersedes=RECORD, reason=AmendmentReason.ADDENDUM, note="")
    world.send_ok(A_COLLEAGUE, TxKind.AMEND_RECORD, fields)
    built = world.chain.built[-1]
    tx_ids = [hashlib.sha256(raw).digest() for raw in built.block.txs]
    cid = cid_bytes_to_text(fields["cid"])
    replicator = Replicator(
        LocalBlobStore(tmp_path / "blobs", 1 << 20),
        HOSPITAL_A,
        AUTHORED,
        lambda: world.state,
        CHAIN_ID,
        65_000,
    )
    # The author's organisation keeps the new record, as it keeps the ones it anchors.
    assert replicator.wanted_cids(built.block, tx_ids, built.result.tx_results) == [cid]
    assert anchored_cid(built.block.txs, built.result.tx_results, new_id) == cid
    assert anchored_cid(built.block.txs, built.result.tx_results, RECORD) is None
