"""`homeserver generate-config`: a new config, signing key and (optionally) development TLS files.

Files are written so that a failure part-way leaves nothing that blocks a second attempt: the
signing key and TLS files are kept when they already exist, and the config is written last.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from federation.ids import parse_server_name
from federation.signing import (
    decode_signing_key_file,
    encode_signing_key_file,
    generate_signing_key,
)
from homeserver.cli import CommandFailed, UsageError
from homeserver.config import ConfigError, generate_config_text, load_config
from homeserver.config_template import DEFAULT_FEDERATION_PORT
from homeserver.config_values import server_name_problem
from homeserver.tls import write_new_file, write_self_signed_certificate


def generate_config(
    server_name: str, data_dir: Path, output: Path, *, self_signed_tls: bool
) -> list[str]:
    """Write everything; returns lines describing what was written, for the operator."""
    problem = server_name_problem(server_name)
    if problem is not None:
        raise UsageError(problem)
    output = output.absolute()
    data_dir = data_dir.absolute()
    if output.exists():
        raise UsageError(f"{output} already exists; move it away to generate a new config")
    report: list[str] = []
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key_path = data_dir / "signing.key"
        report.append(_ensure_signing_key(key_path))
        tls_files: tuple[Path, Path] | None = None
        if self_signed_tls:
            tls_files = (data_dir / "tls.crt", data_dir / "tls.key")
            report.append(_ensure_certificate(*tls_files, server_name))
        text = generate_config_text(
            server_name,
            _as_written(data_dir, output.parent),
            signing_key_path=_as_written(key_path, output.parent),
            tls_certificate=_as_written(tls_files[0], output.parent) if tls_files else None,
            tls_private_key=_as_written(tls_files[1], output.parent) if tls_files else None,
            federation_port=parse_server_name(server_name)[1] or DEFAULT_FEDERATION_PORT,
        )
        write_new_file(output, text.encode("utf-8"), mode=0o600)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise CommandFailed(f"cannot write{where}: {exc.strerror or exc}") from None
    try:
        load_config(output)
    except ConfigError as exc:  # a bug in the template, not the operator's doing
        raise CommandFailed(f"the generated config does not load: {exc}") from None
    report.append(f"Wrote the config {output}")
    return report


def _as_written(path: Path, config_dir: Path) -> str:
    """`path` as the config should spell it: relative to the config's directory when inside it."""
    try:
        return "./" + path.relative_to(config_dir).as_posix()
    except ValueError:
        return str(path)


def _ensure_signing_key(key_path: Path) -> str:
    if key_path.exists():
        try:
            keys = decode_signing_key_file(key_path.read_text(encoding="ascii"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise CommandFailed(f"the existing signing key {key_path} is unusable: {exc}") from None
        if not keys:
            raise CommandFailed(f"the existing signing key file {key_path} holds no key")
        return f"Kept the existing signing key {key_path} ({keys[0].key_id})"
    key = generate_signing_key()
    write_new_file(key_path, encode_signing_key_file([key]).encode("ascii"), mode=0o600)
    return f"Wrote the signing key {key_path} ({key.key_id})"


def _ensure_certificate(cert_path: Path, key_path: Path, server_name: str) -> str:
    if cert_path.exists() and key_path.exists():
        return f"Kept the existing TLS certificate {cert_path} and key {key_path}"
    if cert_path.exists() or key_path.exists():
        present, missing = (cert_path, key_path) if cert_path.exists() else (key_path, cert_path)
        raise CommandFailed(f"{present} exists but {missing} does not; remove {present} or "
                            f"provide {missing}")
    hostnames, addresses = _certificate_names(server_name)
    write_self_signed_certificate(cert_path, key_path, hostnames, addresses)
    return (f"Wrote a self-signed development certificate {cert_path} and key {key_path} "
            f"for {', '.join([*hostnames, *addresses])}")


def _certificate_names(server_name: str) -> tuple[list[str], list[str]]:
    """`localhost` and `127.0.0.1` (CONTRACT), plus the server name's host."""
    hostnames, addresses = ["localhost"], ["127.0.0.1"]
    host = parse_server_name(server_name)[0].strip("[]")
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        if host.lower() not in hostnames:
            hostnames.append(host.lower())
    else:
        if address not in addresses:
            addresses.append(address)
    return hostnames, addresses

