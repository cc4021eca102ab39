"""Fixtures shared by the multi-server integration tests."""

# Two running Veche servers federating over TLS on loopback (defined with its helpers there).
from tests.integration.test_two_servers import servers  # noqa: F401
