"""The homeserver's YAML configuration: frozen models, loading, every problem reported at once.

`load_config(path)` reads the file and returns a `Config`, or raises `ConfigError` listing every
problem with its key path (``listeners.1.port: Input should be a valid integer``). Relative paths
in the file are relative to the file's own directory (CONTRACT, "Config file").
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from federation.room_versions import KNOWN_ROOM_VERSIONS
from homeserver import config_values as values
from homeserver.config_errors import ConfigError, describe_validation_error
from homeserver.config_template import (
    DEFAULT_CLIENT_PORT,
    DEFAULT_FEDERATION_PORT,
    generate_config_text,
)
from homeserver.config_yaml import load_yaml_mapping

__all__ = [
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "FederationConfig",
    "LimitsConfig",
    "ListenerConfig",
    "MediaConfig",
    "OldVerifyKey",
    "RateLimitsConfig",
    "RegistrationConfig",
    "TrustedKeyServer",
    "generate_config_text",
    "load_config",
]

MAX_KEY_VALIDITY = timedelta(days=7)  # the issue: key responses valid at most 7 days ahead

ByteSize = Annotated[StrictInt, BeforeValidator(values.parse_size), Field(gt=0)]
PositiveFloat = Annotated[float, Field(strict=True, gt=0)]
ServerName = Annotated[StrictStr, AfterValidator(lambda v: _checked_server_name(v))]
Cidr = Annotated[StrictStr, AfterValidator(values.cidr)]
KeyId = Annotated[StrictStr, AfterValidator(values.ed25519_key_id)]
PublicKey = Annotated[StrictStr, AfterValidator(values.ed25519_public_key)]


def _checked_server_name(value: str) -> str:
    problem = values.server_name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _base_dir(info: ValidationInfo) -> Path | None:
    context = info.context
    if isinstance(context, Mapping):
        base = context.get("base_dir")
        if isinstance(base, Path):
            return base
    return None


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatabaseConfig(_Section):
    """An existing PostgreSQL; without this section the server runs an embedded one."""

    dsn: StrictStr = Field(min_length=1)
    min_connections: StrictInt = Field(default=2, ge=1)
    max_connections: StrictInt = Field(default=20, ge=1)

    @model_validator(mode="after")
    def _pool_bounds(self) -> DatabaseConfig:
        if self.min_connections > self.max_connections:
            raise ValueError(
                f"min_connections ({self.min_connections}) is larger than "
                f"max_connections ({self.max_connections})"
            )
        return self


class ListenerConfig(_Section):
    """One listening socket; TLS when both certificate and key are set."""

    type: Literal["client", "federation"]
    bind: StrictStr = "127.0.0.1"
    port: StrictInt = Field(ge=0, le=65535)  # 0: the operating system picks a free port
    tls_certificate: Path | None = None
    tls_private_key: Path | None = None

    @field_validator("tls_certificate", "tls_private_key")
    @classmethod
    def _readable(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = values.resolve_path(value, _base_dir(info))
        problem = values.readable_file_problem(path)
        if problem is not None:
            raise ValueError(problem)
        return path

    @model_validator(mode="after")
    def _tls_pair(self) -> ListenerConfig:
        if (self.tls_certificate is None) != (self.tls_private_key is None):
            raise ValueError("set both tls_certificate and tls_private_key for TLS, or neither")
        if self.tls_certificate is not None and self.tls_private_key is not None:
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                    self.tls_certificate, self.tls_private_key
                )
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(
                    f"the TLS certificate and private key do not load together: {exc}"
                ) from None
        return self

    @property
    def tls(self) -> bool:
        return self.tls_certificate is not None


class RegistrationConfig(_Section):
    enabled: StrictBool = False  # open registration with m.login.dummy
    # Set: Synapse-compatible /_synapse/admin/v1/register (nonce + HMAC-SHA1).
    shared_secret: StrictStr | None = Field(default=None, min_length=1)


class TrustedKeyServer(_Section):
    """A notary for other servers' keys (S2S "Querying Keys Through Another Server")."""

    server_name: ServerName
    # Key ID → unpadded base64 public key; empty means the notary's own keys are fetched directly.
    verify_keys: dict[KeyId, PublicKey] = Field(default_factory=dict)


class FederationConfig(_Section):
    enabled: StrictBool = True
    verify_tls: StrictBool = True
    # Outbound requests refuse private and loopback addresses unless listed here (CONTRACT).
    ip_range_allowlist: tuple[Cidr, ...] = ()
    trusted_key_servers: tuple[TrustedKeyServer, ...] = ()  # none: contact no third party
    allowed_servers: tuple[ServerName, ...] | None = None  # None: every server may federate
    denied_servers: tuple[ServerName, ...] = ()
    # Outbound transactions to a server that fails are retried after retry_initial seconds,
    # doubling each time up to retry_max (GUIDE.md "Outbound federation").
    retry_initial: PositiveFloat = 5.0
    retry_max: PositiveFloat = 3600.0


class RateLimitsConfig(_Section):
    enabled: StrictBool = True  # false turns off every limit, client and federation alike
    per_second: PositiveFloat = 5.0  # sustained requests per second per client
    burst: StrictInt = Field(default=30, ge=1)  # requests allowed at once before limiting


class LimitsConfig(_Section):
    """Request limits (CONTRACT, "Request limits")."""

    max_request_body: ByteSize = 1024 * 1024
    max_json_depth: StrictInt = Field(default=100, ge=1)
    request_header_timeout: PositiveFloat = 30.0  # seconds for the request headers to arrive
    keepalive_timeout: PositiveFloat = 75.0  # seconds an idle keep-alive connection stays open


class MediaConfig(_Section):
    max_upload_size: ByteSize = 50 * 1024 * 1024  # advertised as m.upload.size
    store_path: Path | None = None  # uploaded and cached media; None: <data_dir>/media

    @field_validator("store_path")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else values.resolve_path(value, _base_dir(info))


class PresenceConfig(_Section):
    enabled: StrictBool = True  # false: PUT status ignored, everyone offline, no presence EDUs
    idle_timeout: PositiveFloat = 300.0  # seconds without activity before online → unavailable
    offline_timeout: PositiveFloat = 30.0  # seconds after a user's last /sync before offline


class PushersConfig(_Section):
    # Gateway requests refuse private and loopback addresses unless listed here.
    gateway_ip_range_allowlist: tuple[Cidr, ...] = ()
    allow_http_gateways: StrictBool = False  # pusher.yaml: data.url "MUST be an HTTPS URL"
    gateway_timeout: PositiveFloat = 10.0  # seconds for one request to a push gateway


class VoipConfig(_Section):
    """C-S "Voice over IP" GET /voip/turnServer: TURN REST API credentials (the username is
    `<expiry>:<user_id>`, the password base64 HMAC-SHA1 of it under the shared secret)."""

    turn_uris: tuple[StrictStr, ...] = ()  # e.g. "turn:turn.example.com:3478?transport=udp"
    turn_shared_secret: StrictStr | None = None  # the TURN server's static-auth-secret
    # How long the credentials stay valid (`ttl`).
    turn_user_lifetime: Annotated[timedelta, BeforeValidator(values.parse_duration)] = timedelta(
        hours=1
    )
    turn_allow_guests: StrictBool = True


class SupportContact(_Section):
    role: StrictStr  # "m.role.admin", "m.role.security" or a namespaced role
    matrix_id: StrictStr | None = None
    email_address: StrictStr | None = None

    @model_validator(mode="after")
    def _reachable(self) -> SupportContact:
        if self.matrix_id is None and self.email_address is None:
            raise ValueError("a support contact needs matrix_id or email_address")
        return self


class SupportConfig(_Section):
    """/.well-known/matrix/support; 404 while neither is set."""

    contacts: tuple[SupportContact, ...] = ()
    support_page: StrictStr | None = None


class CachesConfig(_Section):
    """In-memory caches (memory per entry: docs/memory.md)."""

    # Parsed events kept by RoomStateCache (~2 KB each); 0 reads every event from the database.
    event_cache_size: StrictInt = Field(default=10_000, ge=0)


class OldVerifyKey(_Section):
    """A retired signing key, published in `old_verify_keys` of /_matrix/key/v2/server."""

    key: PublicKey  # unpadded base64 ed25519 public key
    expired_ts: StrictInt = Field(ge=0)  # POSIX milliseconds when the key stopped being used


def _default_listeners(federation_enabled: bool) -> list[dict[str, Any]]:
    listeners: list[dict[str, Any]] = [{"type": "client", "port": DEFAULT_CLIENT_PORT}]
    if federation_enabled:
        listeners.append({"type": "federation", "port": DEFAULT_FEDERATION_PORT})
    return listeners


class Config(_Section):
    server_name: ServerName
    data_dir: Path = Field(default=Path("data"), validate_default=True)
    signing_key_path: Path  # default: <data_dir>/signing.key, filled in before validation
    database: DatabaseConfig | None = None  # None: embedded PostgreSQL in <data_dir>/postgres
    listeners: tuple[ListenerConfig, ...] = Field(min_length=1)
    registration: RegistrationConfig = Field(default_factory=RegistrationConfig)
    federation: FederationConfig = Field(default_factory=FederationConfig)
    rate_limits: RateLimitsConfig = Field(default_factory=RateLimitsConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    media: MediaConfig = Field(default_factory=MediaConfig)
    presence: PresenceConfig = Field(default_factory=PresenceConfig)
    pushers: PushersConfig = Field(default_factory=PushersConfig)
    voip: VoipConfig = Field(default_factory=VoipConfig)
    support: SupportConfig = Field(default_factory=SupportConfig)
    caches: CachesConfig = Field(default_factory=CachesConfig)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    default_room_version: str = "11"
    public_baseurl: StrictStr | None = None  # the client API's public URL, for .well-known
    old_verify_keys: dict[KeyId, OldVerifyKey] = Field(default_factory=dict)
    # How far ahead `valid_until_ts` of our key response lies.
    key_valid_for: Annotated[timedelta, BeforeValidator(values.parse_duration)] = timedelta(days=1)

    @model_validator(mode="before")
    @classmethod
    def _fill_derived_defaults(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        filled = dict(data)
        if "signing_key_path" not in filled:
            data_dir = filled.get("data_dir", "data")
            if not isinstance(data_dir, str | Path):
                data_dir = "data"  # the data_dir error is reported on its own
            filled["signing_key_path"] = Path(data_dir) / "signing.key"
        if "listeners" not in filled:
            federation = filled.get("federation")
            enabled = not (isinstance(federation, Mapping) and federation.get("enabled") is False)
            filled["listeners"] = _default_listeners(enabled)
        return filled

    @field_validator("data_dir", "signing_key_path")
    @classmethod
    def _resolve(cls, value: Path, info: ValidationInfo) -> Path:
        return values.resolve_path(value, _base_dir(info))

    @field_validator("listeners")
    @classmethod
    def _listeners_consistent(
        cls, listeners: tuple[ListenerConfig, ...]
    ) -> tuple[ListenerConfig, ...]:
        if not any(listener.type == "client" for listener in listeners):
            raise ValueError("at least one listener of type client is required")
        seen: dict[tuple[str, int], ListenerConfig] = {}
        for listener in listeners:
            if listener.port == 0:
                continue
            address = (listener.bind, listener.port)
            other = seen.setdefault(address, listener)
            if other is listener:
                continue
            where = f"{listener.bind}:{listener.port}"
            if other.type == listener.type:
                raise ValueError(f"two {listener.type} listeners on {where}")
            if (other.tls_certificate, other.tls_private_key) != (
                listener.tls_certificate,
                listener.tls_private_key,
            ):
                raise ValueError(f"listeners sharing {where} must use the same TLS files")
        return listeners

    @field_validator("default_room_version", mode="before")
    @classmethod
    def _room_version(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # `default_room_version: 11` unquoted in YAML
        if isinstance(value, str) and value not in KNOWN_ROOM_VERSIONS:
            known = ", ".join(KNOWN_ROOM_VERSIONS)
            raise ValueError(f"unknown room version {value!r}; known versions: {known}")
        return value

    @field_validator("public_baseurl")
    @classmethod
    def _baseurl(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be a URL starting with https:// or http://")
        return value

    @field_validator("key_valid_for")
    @classmethod
    def _key_validity(cls, value: timedelta) -> timedelta:
        if not timedelta(0) < value <= MAX_KEY_VALIDITY:
            raise ValueError("must be more than 0 and at most 7 days (for example \"1d\")")
        return value

    @property
    def server_port(self) -> int | None:
        """The port in `server_name`, if it carries one."""
        name = self.server_name
        host_end = name.rfind("]") if name.startswith("[") else -1
        _, sep, port = name[host_end + 1 :].rpartition(":")
        return int(port) if sep else None


def parse_config(data: object, base_dir: Path | None = None) -> Config:
    """Validate already-parsed config data; relative paths are resolved against `base_dir`."""
    if not isinstance(data, Mapping):
        raise ConfigError(["(top level): expected a mapping of keys to values"])
    try:
        return Config.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, Config)) from None


def load_config(path: Path) -> Config:
    """Read the YAML config at `path`; raises `ConfigError` with every problem found."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([f"{path}: cannot read the config file: {reason}"]) from None
    data, problems = load_yaml_mapping(text)
    if data is None:
        raise ConfigError(problems)
    base_dir = path.parent.resolve()
    try:
        config = parse_config(data, base_dir)
    except ConfigError as exc:
        raise ConfigError([*problems, *exc.problems]) from None
    if problems:
        raise ConfigError(problems)
    return config

