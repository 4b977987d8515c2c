"""The client tests' real node (one single-validator devnet per session), for the /fhir tests."""

from tests.client.conftest import real_node

__all__ = ["real_node"]
