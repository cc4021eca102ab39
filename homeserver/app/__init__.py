"""The composition root: the only place where dependencies are wired together.

`services` builds every service once per process (`build_dependencies`), composing the
`rooms` and `federation` parts; `routes` builds the aiohttp applications and hands each
handler module exactly the services it needs. Nothing else in Veche constructs services or
looks them up globally.
"""

from homeserver.app.federation import start_federation_sender
from homeserver.app.rooms import RoomServices
from homeserver.app.routes import (
    CLIENT,
    FEDERATION,
    ListenerSpec,
    ListenerType,
    build_application,
    build_listener_apps,
    listener_specs,
)
from homeserver.app.services import (
    AccountServices,
    Dependencies,
    RoomEngine,
    build_dependencies,
    build_e2ee,
)

__all__ = [
    "CLIENT",
    "FEDERATION",
    "AccountServices",
    "Dependencies",
    "ListenerSpec",
    "ListenerType",
    "RoomEngine",
    "RoomServices",
    "build_application",
    "build_dependencies",
    "build_e2ee",
    "build_listener_apps",
    "listener_specs",
    "start_federation_sender",
]
