"""Every fault the consensus runtime reports against a peer is scored by the P2P layer
(docs/spec/consensus.md §4.7), and invalid signatures are the severe kind that bans at once."""

from __future__ import annotations

from emrchain.consensus.runtime import PeerFault
from emrchain.node.consensus_driver import PEER_FAULT_MISBEHAVIOUR
from emrchain.p2p import Misbehaviour
from emrchain.p2p.scoring import SEVERE


def test_every_peer_fault_maps_to_a_misbehaviour() -> None:
    assert set(PEER_FAULT_MISBEHAVIOUR) == set(PeerFault)
    assert all(isinstance(kind, Misbehaviour) for kind in PEER_FAULT_MISBEHAVIOUR.values())


def test_only_a_bad_signature_bans_at_the_first_report() -> None:
    severe = {fault for fault, kind in PEER_FAULT_MISBEHAVIOUR.items() if kind in SEVERE}
    assert severe == {PeerFault.INVALID_SIGNATURE}
