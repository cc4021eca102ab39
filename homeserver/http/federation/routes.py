"""All X-Matrix-authenticated Server-Server endpoints, for homeserver/app.py.

`/_matrix/key/*` and `/_matrix/federation/v1/version` need no authentication and are added
by app.py itself (keys.py, key_query.py, version.py).
"""

from __future__ import annotations

from aiohttp import web

from homeserver.http.federation import membership, query, rooms, transactions, user_keys
from homeserver.http.federation.auth import FederationAuth
from homeserver.http.federation.query import AliasResolver, ProfileReader
from homeserver.services.federation_setup import FederationInboundServices
from homeserver.services.federation_user_keys import FederationUserKeys
from homeserver.services.space_hierarchy import SpaceHierarchy


def add_routes(
    router: web.UrlDispatcher,
    auth: FederationAuth,
    services: FederationInboundServices,
    *,
    server_name: str,
    aliases: AliasResolver,
    profiles: ProfileReader,
    devices_and_keys: FederationUserKeys | None = None,
    hierarchy: SpaceHierarchy | None = None,
) -> None:
    transactions.add_routes(router, auth, services.transactions)
    rooms.add_routes(router, auth, services.reads)
    membership.add_routes(router, auth, services.membership, services.invites)
    query.add_routes(router, auth, server_name, aliases, profiles)
    if devices_and_keys is not None and hierarchy is not None:
        user_keys.add_routes(router, auth, devices_and_keys, hierarchy)
