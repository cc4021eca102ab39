"""Talking to other homeservers: discovery (`.well-known`, SRV), the IP range policy, signed
requests, and the keyring of other servers' signing keys (issue 5, "Talking to other servers")."""

from homeserver.remote.client import ClientLimits, FederationClient, format_path, request_target
from homeserver.remote.discovery import DiscoveryError, ServerAddress, ServerResolver
from homeserver.remote.errors import (
    AddressBlocked,
    DestinationNotAllowed,
    RemoteError,
    RemoteUnreachable,
)
from homeserver.remote.ipfilter import IpRangePolicy
from homeserver.remote.keyring import Keyring, KeyUnavailableError, Notary, OwnKeys
from homeserver.remote.policy import ServerPolicy

__all__ = [
    "AddressBlocked",
    "ClientLimits",
    "DestinationNotAllowed",
    "DiscoveryError",
    "FederationClient",
    "IpRangePolicy",
    "KeyUnavailableError",
    "Keyring",
    "Notary",
    "OwnKeys",
    "RemoteError",
    "RemoteUnreachable",
    "ServerAddress",
    "ServerPolicy",
    "ServerResolver",
    "format_path",
    "request_target",
]
