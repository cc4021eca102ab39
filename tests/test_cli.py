"""The `homeserver` command: exit codes, generate-config's files, dispatch, `make run`'s config."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from federation.signing import decode_signing_key_file
from homeserver import cli
from homeserver.config import Config, load_config

REPO = Path(__file__).resolve().parent.parent
SYNAPSE_KEY_LINE = re.compile(r"^ed25519 a_[A-Za-z]{4} [A-Za-z0-9+/]{43}$")


def homeserver(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m homeserver ARGS` as an operator would, stdin not a terminal."""
    return subprocess.run(
        [sys.executable, "-m", "homeserver", *args],
        cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
    )


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def bad_config(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "server_name: example.org\nlisteners:\n  - {type: client, port: 8008}\n"
        "  - {type: federation, port: many}\nfederation: {ip_range_allowlist: [nope]}\ncolour: 1\n",
        encoding="utf-8",
    )
    return path


# --- exit codes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [[], ["generate-config"], ["run"], ["register-user"], ["migrate"]]
)
def test_help_exits_zero_for_every_command(command: list[str]) -> None:
    result = homeserver(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: homeserver")


@pytest.mark.parametrize(
    "args",
    [[], ["frobnicate"], ["run"], ["generate-config"], ["run", "--config", "x", "--bogus"],
     ["register-user", "--config", "x"]],
)
def test_bad_usage_exits_two(args: list[str]) -> None:
    result = homeserver(*args)
    assert result.returncode == 2
    assert "usage:" in result.stderr


@pytest.mark.parametrize("command", ["run", "migrate", "register-user"])
def test_bad_config_lists_every_problem_and_exits_two_without_traceback(
    bad_config: Path, command: str
) -> None:
    extra = ["alice", "--password", "pw"] if command == "register-user" else []
    result = homeserver(command, "--config", str(bad_config), *extra)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "3 configuration problems" in result.stderr
    for key_path in ("listeners.1.port", "federation.ip_range_allowlist.0", "colour"):
        assert f"  {key_path}: " in result.stderr


def test_missing_config_file_exits_two(tmp_path: Path) -> None:
    result = homeserver("run", "--config", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert "cannot read the config file" in result.stderr
    assert "Traceback" not in result.stderr


# --- generate-config ------------------------------------------------------------------------


def test_generate_config_writes_a_loadable_config_and_a_synapse_format_key(tmp_path: Path) -> None:
    result = homeserver("generate-config", "--server-name", "example.org", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    key_file = tmp_path / "data" / "signing.key"
    assert SYNAPSE_KEY_LINE.match(key_file.read_text(encoding="ascii").rstrip("\n"))
    assert mode_of(key_file) == 0o600
    [key] = decode_signing_key_file(key_file.read_text(encoding="ascii"))
    assert key.key_id in result.stdout
    config = load_config(tmp_path / "homeserver.yaml")
    assert config.server_name == "example.org"
    assert config.signing_key_path == key_file.resolve()
    assert [(x.type, x.bind, x.port, x.tls) for x in config.listeners] == [
        ("client", "127.0.0.1", 8008, False),
        ("federation", "127.0.0.1", 8448, False),
    ]
    assert not (tmp_path / "data" / "tls.crt").exists()


def test_self_signed_tls_writes_a_certificate_for_localhost_and_127_0_0_1(tmp_path: Path) -> None:
    code = cli.main(["generate-config", "--server-name", "localhost:9448", "--self-signed-tls",
                     "--data-dir", str(tmp_path / "d"), "--output", str(tmp_path / "hs.yaml")])
    assert code == 0
    cert_path, key_path = tmp_path / "d" / "tls.crt", tmp_path / "d" / "tls.key"
    assert mode_of(key_path) == 0o600
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)
    config = load_config(tmp_path / "hs.yaml")  # loading also checks the key matches the cert
    [federation] = [x for x in config.listeners if x.type == "federation"]
    assert (federation.port, federation.tls_certificate, federation.tls_private_key) == (
        9448, cert_path.resolve(), key_path.resolve()
    )


def test_generate_config_refuses_to_overwrite_a_config(tmp_path: Path) -> None:
    existing = tmp_path / "homeserver.yaml"
    existing.write_text("server_name: mine.org\n", encoding="utf-8")
    result = homeserver("generate-config", "--server-name", "example.org", cwd=tmp_path)
    assert result.returncode == 2
    assert "already exists" in result.stderr
    assert existing.read_text(encoding="utf-8") == "server_name: mine.org\n"
    assert not (tmp_path / "data").exists()


def test_generate_config_keeps_an_existing_signing_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    key_line = "ed25519 a_Keep 3+eWa0YVy6Oh4DbEma/k2RU+xBXgh8GxxAHjQuev3GQ\n"
    (data / "signing.key").write_text(key_line, encoding="ascii")
    code = cli.main(["generate-config", "--server-name", "example.org",
                     "--data-dir", str(data), "--output", str(tmp_path / "hs.yaml")])
    assert code == 0
    assert (data / "signing.key").read_text(encoding="ascii") == key_line


def test_generate_config_refuses_an_unusable_existing_signing_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "signing.key").write_text("not a key\n", encoding="ascii")
    code = cli.main(["generate-config", "--server-name", "example.org",
                     "--data-dir", str(tmp_path / "data"), "--output", str(tmp_path / "hs.yaml")])
    assert code == 1
    assert "unusable" in capsys.readouterr().err
    assert not (tmp_path / "hs.yaml").exists()


def test_generate_config_refuses_a_bad_server_name_and_writes_nothing(tmp_path: Path) -> None:
    result = homeserver("generate-config", "--server-name", "bad name", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid server name" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_config_outside_the_data_dir_uses_absolute_paths(tmp_path: Path) -> None:
    code = cli.main(["generate-config", "--server-name", "example.org",
                     "--data-dir", str(tmp_path / "var" / "data"),
                     "--output", str(tmp_path / "etc" / "hs.yaml")])
    assert code == 0
    config = load_config(tmp_path / "etc" / "hs.yaml")
    assert config.data_dir == (tmp_path / "var" / "data").resolve()
    assert config.signing_key_path.is_file()


# --- dispatch to the server -----------------------------------------------------------------


@pytest.fixture
def server_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    """Stand in for homeserver.server and record what the CLI asks of it."""
    calls: list[tuple[object, ...]] = []
    fake = types.ModuleType("homeserver.server")

    def run_server(config: Config) -> int:
        calls.append(("run", config.server_name))
        return 0

    def run_migrate(config: Config) -> int:
        calls.append(("migrate", config.server_name))
        return 1

    def run_register_user(config: Config, user: str, password: str, admin: bool) -> int:
        calls.append(("register", user, password, admin))
        return 0

    fake.run_server = run_server  # type: ignore[attr-defined]
    fake.run_migrate = run_migrate  # type: ignore[attr-defined]
    fake.run_register_user = run_register_user  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "homeserver.server", fake)
    return calls


@pytest.fixture
def good_config(tmp_path: Path) -> Path:
    path = tmp_path / "hs.yaml"
    path.write_text("server_name: example.org\n", encoding="utf-8")
    return path


def test_commands_pass_the_loaded_config_to_the_server(
    good_config: Path, server_calls: list[tuple[object, ...]]
) -> None:
    assert cli.main(["run", "--config", str(good_config)]) == 0
    assert cli.main(["migrate", "--config", str(good_config)]) == 1
    assert cli.main(["register-user", "--config", str(good_config), "alice",
                     "--password", "s3cret", "--admin"]) == 0
    assert server_calls == [
        ("run", "example.org"), ("migrate", "example.org"), ("register", "alice", "s3cret", True)
    ]


def test_register_user_asks_twice_on_a_terminal(
    good_config: Path, server_calls: list[tuple[object, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter(["pw1", "pw1"])
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt: next(answers))
    assert cli.main(["register-user", "--config", str(good_config), "bob"]) == 0
    assert server_calls == [("register", "bob", "pw1", False)]


def test_register_user_refuses_passwords_that_differ(
    good_config: Path, server_calls: list[tuple[object, ...]], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    answers = iter(["pw1", "pw2"])
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt: next(answers))
    assert cli.main(["register-user", "--config", str(good_config), "bob"]) == 2
    assert "do not match" in capsys.readouterr().err
    assert server_calls == []


def test_register_user_without_password_or_terminal_exits_two(good_config: Path) -> None:
    result = homeserver("register-user", "--config", str(good_config), "carol")
    assert result.returncode == 2
    assert "not a terminal" in result.stderr
    assert "Traceback" not in result.stderr


# --- `make run`'s config generation ---------------------------------------------------------


def test_make_writes_the_run_config_as_documented(tmp_path: Path) -> None:
    """`make config`, the step `make run` takes before starting the server (not started here)."""
    venv = Path(sys.prefix)
    config_path, data_dir = tmp_path / "homeserver.yaml", tmp_path / "data"
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "-o", str(venv / ".installed-run"),
         "config", f"VENV={venv}", f"CONFIG={config_path}", f"DATA_DIR={data_dir}"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = load_config(config_path)
    assert config.server_name == "localhost:8448"
    assert config.database is None
    assert [(x.type, x.bind, x.port, x.tls) for x in config.listeners] == [
        ("client", "127.0.0.1", 8008, False),
        ("federation", "127.0.0.1", 8448, True),
    ]
    assert decode_signing_key_file((data_dir / "signing.key").read_text(encoding="ascii"))
