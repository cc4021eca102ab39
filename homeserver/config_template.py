"""The commented config that `homeserver generate-config` writes.

Only the keys an operator usually sets are written out; `config.example.yaml` documents every
key with its default.
"""

from __future__ import annotations

import json

DEFAULT_CLIENT_PORT = 8008
DEFAULT_FEDERATION_PORT = 8448


def _quoted(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(value)


def _federation_listener(
    port: int, tls_certificate: str | None, tls_private_key: str | None
) -> str:
    listener = f"  - type: federation\n    bind: 127.0.0.1\n    port: {port}\n"
    if tls_certificate is not None and tls_private_key is not None:
        listener += (
            f"    tls_certificate: {_quoted(tls_certificate)}\n"
            f"    tls_private_key: {_quoted(tls_private_key)}\n"
        )
    else:
        listener += (
            "    # TLS when both are set (without them, terminate TLS in a reverse proxy):\n"
            "    # tls_certificate: ./data/tls.crt\n"
            "    # tls_private_key: ./data/tls.key\n"
        )
    return listener


def generate_config_text(
    server_name: str,
    data_dir: str,
    *,
    signing_key_path: str | None = None,
    tls_certificate: str | None = None,
    tls_private_key: str | None = None,
    client_port: int = DEFAULT_CLIENT_PORT,
    federation_port: int = DEFAULT_FEDERATION_PORT,
) -> str:
    """A commented YAML config; paths are written as given (relative to the config's directory)."""
    key_path = signing_key_path if signing_key_path is not None else f"{data_dir}/signing.key"
    return f"""\
# Veche homeserver configuration. Every key and its default: config.example.yaml.
# Relative paths are relative to the directory of this file.

# The name in every user ID (@alice:{server_name}). It cannot be changed later.
# With a port, other servers reach the federation listener at that host and port over HTTPS.
server_name: {_quoted(server_name)}

# Signing keys, media and the embedded database live here.
data_dir: {_quoted(data_dir)}

# The server's ed25519 signing key (Synapse's key-file format).
signing_key_path: {_quoted(key_path)}

# Without a `database` section Veche runs an embedded PostgreSQL in <data_dir>/postgres.
# To use an existing PostgreSQL instead:
# database:
#   dsn: postgresql://veche:secret@localhost:5432/veche
#   min_connections: 2
#   max_connections: 20

listeners:
  # The Client-Server API. Plain HTTP here; put a TLS reverse proxy in front of it.
  - type: client
    bind: 127.0.0.1
    port: {client_port}
  # The Server-Server API (/_matrix/federation/*, /_matrix/key/*).
  # Bind 0.0.0.0 (or a public address) to accept other servers directly.
{_federation_listener(federation_port, tls_certificate, tls_private_key)}
registration:
  # true: anyone may register through the client API.
  enabled: false
  # Set a long random secret to enable /_synapse/admin/v1/register (Synapse-compatible).
  shared_secret: null

federation:
  enabled: true
  # false only to federate with development servers that use self-signed certificates.
  verify_tls: true
  # Outbound requests never reach private or loopback addresses unless listed here,
  # e.g. ["127.0.0.0/8", "::1/128"] to federate with other servers on this machine.
  ip_range_allowlist: []
  # Notary servers trusted for other servers' keys; none by default.
  trusted_key_servers: []

rate_limits:
  enabled: true

# debug, info, warning or error
log_level: info
"""
