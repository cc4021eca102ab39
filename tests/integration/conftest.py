"""Fixtures shared by the multi-server integration tests."""

# Running Veche servers federating over TLS on loopback (defined with their helpers there).
from tests.integration.cluster import three_servers  # noqa: F401
from tests.integration.test_two_servers import servers  # noqa: F401
