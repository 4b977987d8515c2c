"""emrchain: a permissioned BFT blockchain node for medical-record anchors, consent and audit."""

__version__ = "0.1.0"
