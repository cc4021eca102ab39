"""Config loading: defaults, path resolution, value formats, and every problem reported at once."""

from __future__ import annotations

import re
import textwrap
import typing
from datetime import timedelta
from pathlib import Path

import pydantic
import pytest

from homeserver.config import (
    Config,
    ConfigError,
    ListenerConfig,
    generate_config_text,
    load_config,
    parse_config,
)
from homeserver.tls import write_self_signed_certificate

REPO = Path(__file__).resolve().parent.parent
PUBLIC_KEY = "l8Hft5qXKn1vfHrg3p4+W8gELQVo8N13JkluMfmn2sQ"  # 32 bytes, unpadded base64


def write_config(directory: Path, text: str, name: str = "homeserver.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def problem_at(problems: list[str], key_path: str) -> str:
    matching = [p for p in problems if p.startswith(f"{key_path}: ")]
    assert matching, f"no problem reported at {key_path!r}; got {problems}"
    return matching[0]


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    write_self_signed_certificate(cert, key)
    return cert, key


# --- defaults and paths ---------------------------------------------------------------------


def test_minimal_config_gets_client_and_federation_listeners_and_data_paths(tmp_path: Path) -> None:
    tmp_path = tmp_path.resolve()
    config = load_config(write_config(tmp_path, "server_name: localhost:8448\n"))
    assert config.server_name == "localhost:8448"
    assert config.server_port == 8448
    assert config.data_dir == tmp_path / "data"
    assert config.signing_key_path == tmp_path / "data" / "signing.key"
    assert config.database is None
    assert [(x.type, x.bind, x.port, x.tls) for x in config.listeners] == [
        ("client", "127.0.0.1", 8008, False),
        ("federation", "127.0.0.1", 8448, False),
    ]
    assert config.federation.trusted_key_servers == ()
    assert config.limits.max_request_body == 1024 * 1024
    assert config.limits.max_json_depth == 100
    assert config.media.max_upload_size == 50 * 1024 * 1024
    assert config.default_room_version == "11"
    assert config.key_valid_for == timedelta(days=1)
    assert config.log_level == "info"


def test_federation_disabled_means_only_a_client_listener_by_default(tmp_path: Path) -> None:
    config = load_config(
        write_config(tmp_path, "server_name: example.org\nfederation: {enabled: false}\n")
    )
    assert [listener.type for listener in config.listeners] == ["client"]


def test_relative_paths_resolve_against_the_config_files_directory(
    tmp_path: Path, tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path = tmp_path.resolve()
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / "certs").mkdir()
    for source in tls_files:
        (config_dir / "certs" / source.name).write_bytes(source.read_bytes())
    path = write_config(config_dir, """\
        server_name: example.org
        data_dir: state
        listeners:
          - {type: client, port: 8008}
          - {type: federation, port: 8448,
             tls_certificate: certs/tls.crt, tls_private_key: ./certs/tls.key}
        """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(Path("../etc/homeserver.yaml"))
    assert config.data_dir == config_dir / "state"
    assert config.signing_key_path == config_dir / "state" / "signing.key"
    federation = config.listeners[1]
    assert federation.tls
    assert federation.tls_certificate is not None
    assert federation.tls_certificate == config_dir / "certs" / "tls.crt"
    assert path.exists()


def test_absolute_paths_are_kept_as_written(tmp_path: Path) -> None:
    key_path = tmp_path / "keys" / "server.key"
    config = load_config(write_config(
        tmp_path,
        f"server_name: example.org\ndata_dir: /var/lib/veche\nsigning_key_path: {key_path}\n",
    ))
    assert config.data_dir == Path("/var/lib/veche")
    assert config.signing_key_path == key_path


def test_config_objects_are_frozen(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "server_name: example.org\n"))
    with pytest.raises(pydantic.ValidationError):
        config.server_name = "other.org"  # type: ignore[misc]


# --- value formats --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "size"),
    [(1048576, 1048576), ("1M", 1048576), ("50M", 50 * 1024**2), ("512K", 512 * 1024),
     ("1G", 1024**3), ("2MiB", 2 * 1024**2), ("10 mb", 10 * 1024**2), ("4096", 4096)],
)
def test_sizes_are_bytes_or_numbers_with_a_binary_suffix(written: object, size: int) -> None:
    config = parse_config({"server_name": "example.org", "media": {"max_upload_size": written}})
    assert config.media.max_upload_size == size


@pytest.mark.parametrize("written", ["12X", "1.5M", "-1", "M", True, 0, -5, [1]])
def test_bad_sizes_are_reported_at_their_key(written: object) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"server_name": "example.org", "limits": {"max_request_body": written}})
    assert len(caught.value.problems) == 1
    problem_at(caught.value.problems, "limits.max_request_body")


@pytest.mark.parametrize(
    ("written", "duration"),
    [("12h", timedelta(hours=12)), ("7d", timedelta(days=7)), (3600, timedelta(hours=1)),
     ("90m", timedelta(minutes=90))],
)
def test_key_validity_is_a_duration(written: object, duration: timedelta) -> None:
    config = parse_config({"server_name": "example.org", "key_valid_for": written})
    assert config.key_valid_for == duration


@pytest.mark.parametrize("written", ["8d", "0s", "1 fortnight", -60])
def test_key_validity_beyond_seven_days_or_unparsable_is_refused(written: object) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"server_name": "example.org", "key_valid_for": written})
    problem_at(caught.value.problems, "key_valid_for")


@pytest.mark.parametrize(
    "name", ["example.org", "localhost:8448", "1.2.3.4", "[::1]:8448", "[2001:db8::1]", "a-b.c"]
)
def test_valid_server_names_are_accepted(name: str) -> None:
    assert parse_config({"server_name": name}).server_name == name


@pytest.mark.parametrize(
    "name",
    ["", "exa mple.org", "example.org:", "example.org:0", "example.org:70000", "1.2.3.999",
     "[::1", "-bad.org", "under_score.org", "a..b", 8448],
)
def test_invalid_server_names_are_refused(name: object) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"server_name": name})
    problem_at(caught.value.problems, "server_name")


def test_ip_ranges_are_normalised_and_bad_ones_reported_by_index() -> None:
    config = parse_config({
        "server_name": "example.org",
        "federation": {"ip_range_allowlist": ["127.0.0.1/8", "::1/128", "10.1.2.3"]},
    })
    assert config.federation.ip_range_allowlist == ("127.0.0.0/8", "::1/128", "10.1.2.3/32")
    with pytest.raises(ConfigError) as caught:
        parse_config({
            "server_name": "example.org",
            "federation": {"ip_range_allowlist": ["127.0.0.0/8", "10.0.0.0/33", "nonsense"]},
        })
    assert "10.0.0.0/33" in problem_at(caught.value.problems, "federation.ip_range_allowlist.1")
    problem_at(caught.value.problems, "federation.ip_range_allowlist.2")


def test_unquoted_room_version_is_read_as_text_and_unknown_versions_refused() -> None:
    assert parse_config({"server_name": "a.org", "default_room_version": 10}) \
        .default_room_version == "10"
    with pytest.raises(ConfigError) as caught:
        parse_config({"server_name": "a.org", "default_room_version": "99"})
    assert "unknown room version" in problem_at(caught.value.problems, "default_room_version")


def test_old_verify_keys_need_ed25519_key_ids_and_32_byte_keys() -> None:
    good = {"ed25519:a_old1": {"key": PUBLIC_KEY, "expired_ts": 1_700_000_000_000}}
    config = parse_config({"server_name": "a.org", "old_verify_keys": good})
    assert config.old_verify_keys["ed25519:a_old1"].key == PUBLIC_KEY
    with pytest.raises(ConfigError) as caught:
        parse_config({"server_name": "a.org", "old_verify_keys": {
            "rsa:x": {"key": PUBLIC_KEY, "expired_ts": 1},
            "ed25519:short": {"key": "AAAA", "expired_ts": 1},
        }})
    problem_at(caught.value.problems, "old_verify_keys.rsa:x.[key]")
    problem_at(caught.value.problems, "old_verify_keys.ed25519:short.key")


# --- listeners ------------------------------------------------------------------------------


def test_tls_needs_both_certificate_and_key(tls_files: tuple[Path, Path]) -> None:
    cert, _ = tls_files
    with pytest.raises(ConfigError) as caught:
        parse_config({"server_name": "a.org", "listeners": [
            {"type": "client", "port": 8008, "tls_certificate": str(cert)},
        ]})
    assert "both" in problem_at(caught.value.problems, "listeners.0")


def test_tls_certificate_and_key_that_do_not_match_are_refused(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    write_self_signed_certificate(first / "tls.crt", first / "tls.key")
    write_self_signed_certificate(second / "tls.crt", second / "tls.key")
    with pytest.raises(ConfigError) as caught:
        parse_config({"server_name": "a.org", "listeners": [{
            "type": "client", "port": 8008,
            "tls_certificate": str(first / "tls.crt"), "tls_private_key": str(second / "tls.key"),
        }]})
    assert "do not load together" in problem_at(caught.value.problems, "listeners.0")


def test_a_directory_is_not_a_readable_tls_file(
    tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"server_name": "a.org", "listeners": [{
            "type": "client", "port": 8008,
            "tls_certificate": str(tmp_path), "tls_private_key": str(tls_files[1]),
        }]})
    assert "directory" in problem_at(caught.value.problems, "listeners.0.tls_certificate")


def test_client_and_federation_may_share_a_port_but_two_clients_may_not() -> None:
    shared = parse_config({"server_name": "a.org", "listeners": [
        {"type": "client", "port": 8008}, {"type": "federation", "port": 8008},
    ]})
    assert [listener.port for listener in shared.listeners] == [8008, 8008]
    with pytest.raises(ConfigError) as caught:
        parse_config({"server_name": "a.org", "listeners": [
            {"type": "client", "port": 8008}, {"type": "client", "port": 8008},
        ]})
    assert "two client listeners" in problem_at(caught.value.problems, "listeners")


def test_a_client_listener_is_required() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"server_name": "a.org", "listeners": [{"type": "federation", "port": 1}]})
    assert "client" in problem_at(caught.value.problems, "listeners")


def test_listeners_can_be_built_in_code() -> None:
    listener = ListenerConfig(type="client", port=0)
    config = Config(server_name="a.org", listeners=(listener,))  # type: ignore[call-arg]
    assert config.listeners == (listener,)
    assert config.signing_key_path == Path("data/signing.key")


# --- every problem at once ------------------------------------------------------------------


def test_every_kind_of_problem_is_listed_with_its_key_path_in_one_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, """\
        server_name: "bad name:8448"
        colour: blue
        database: {min_connections: 3}
        listeners:
          - {type: client, port: 8008}
          - {type: federation, port: "eighty",
             tls_certificate: missing.crt, tls_private_key: missing.key}
        federation:
          ip_range_allowlist: ["10.0.0.0/33"]
          verfy_tls: false
        media:
          max_upload_size: 12X
        """)
    problems = problems_of(path)
    assert problem_at(problems, "colour") == "colour: unknown key; known keys here: " + ", ".join(
        Config.model_fields
    )
    assert "required" in problem_at(problems, "database.dsn")
    assert "valid integer" in problem_at(problems, "listeners.1.port")
    assert "missing.crt" in problem_at(problems, "listeners.1.tls_certificate")
    assert "missing.key" in problem_at(problems, "listeners.1.tls_private_key")
    assert "bad name" in problem_at(problems, "server_name")
    assert "10.0.0.0/33" in problem_at(problems, "federation.ip_range_allowlist.0")
    assert "'verify_tls'" in problem_at(problems, "federation.verfy_tls")
    assert "12X" in problem_at(problems, "media.max_upload_size")
    assert len(problems) == 9, problems


def test_missing_server_name_is_reported_as_a_required_key(tmp_path: Path) -> None:
    problems = problems_of(write_config(tmp_path, "log_level: loud\n"))
    assert problem_at(problems, "server_name") == "server_name: required key is missing"
    assert "'debug'" in problem_at(problems, "log_level")


def test_wrong_types_name_the_value_found(tmp_path: Path) -> None:
    problems = problems_of(write_config(tmp_path, """\
        server_name: example.org
        registration: {enabled: "yes"}
        rate_limits: {per_second: fast}
        listeners: {type: client}
        """))
    assert "'yes'" in problem_at(problems, "registration.enabled")
    problem_at(problems, "rate_limits.per_second")
    problem_at(problems, "listeners")


def test_secrets_of_the_wrong_type_are_not_echoed_back() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"server_name": "a.org", "registration": {"shared_secret": 80085},
                      "database": {"dsn": 12345}})
    assert "80085" not in problem_at(caught.value.problems, "registration.shared_secret")
    assert "12345" not in problem_at(caught.value.problems, "database.dsn")


def test_invalid_yaml_is_reported_with_its_line(tmp_path: Path) -> None:
    problems = problems_of(write_config(tmp_path, "server_name: a.org\nlisteners: [\n  - x: 1\n"))
    assert len(problems) == 1
    assert re.search(r"invalid YAML: line \d+, column \d+", problems[0])


def test_a_key_given_twice_is_a_problem_not_a_silent_override(tmp_path: Path) -> None:
    problems = problems_of(
        write_config(tmp_path, "server_name: a.org\nlog_level: info\nlog_level: debug\n")
    )
    assert problems == ["line 3: the key 'log_level' is given twice"]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- server_name: a.org\n", "42\n"])
def test_empty_or_non_mapping_files_are_refused(tmp_path: Path, text: str) -> None:
    problems = problems_of(write_config(tmp_path, text))
    assert len(problems) == 1
    assert problems[0].startswith("(top level): ")


def test_an_unreadable_config_file_is_a_config_error(tmp_path: Path) -> None:
    problems = problems_of(tmp_path / "absent.yaml")
    assert "cannot read the config file" in problems[0]


def test_config_error_message_lists_every_problem() -> None:
    error = ConfigError(["a: one", "b.c: two"])
    assert str(error) == "2 problems in the configuration:\n  - a: one\n  - b.c: two"


# --- config.example.yaml and the generated config -------------------------------------------


def _field_paths(model: type[pydantic.BaseModel], prefix: str = "") -> list[str]:
    paths: list[str] = []
    for name, field in model.model_fields.items():
        paths.append(prefix + name)
        for nested in _models_in(field.annotation):
            paths += _field_paths(nested, f"{prefix}{name}.")
    return paths


def _models_in(annotation: object) -> list[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def test_example_config_loads_and_shows_exactly_the_defaults() -> None:
    example = load_config(REPO / "config.example.yaml")
    defaults = parse_config({"server_name": example.server_name}, REPO)
    assert example == defaults


def test_example_config_documents_every_key() -> None:
    text = (REPO / "config.example.yaml").read_text(encoding="utf-8")
    undocumented = [
        path for path in _field_paths(Config)
        if not re.search(rf"^[ #]*(- )?{re.escape(path.rsplit('.', 1)[-1])}:", text, re.M)
    ]
    assert undocumented == []


@pytest.mark.parametrize("with_tls", [False, True])
def test_generated_config_text_loads(tmp_path: Path, with_tls: bool) -> None:
    if with_tls:
        write_self_signed_certificate(tmp_path / "tls.crt", tmp_path / "tls.key")
    text = generate_config_text(
        "localhost:9448", "./data",
        tls_certificate="./tls.crt" if with_tls else None,
        tls_private_key="./tls.key" if with_tls else None,
        federation_port=9448,
    )
    config = load_config(write_config(tmp_path, text))
    assert config.server_name == "localhost:9448"
    assert config.data_dir == tmp_path.resolve() / "data"
    federation = [x for x in config.listeners if x.type == "federation"]
    assert [(x.port, x.tls) for x in federation] == [(9448, with_tls)]
