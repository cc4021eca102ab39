"""The `homeserver` command: generate-config, run, register-user, migrate.

Exit codes (CONTRACT): 0 ok, 1 runtime failure, 2 bad usage or bad configuration.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from homeserver.config import Config, ConfigError, load_config

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad usage: the message is printed and the command exits with code 2."""


class CommandFailed(Exception):
    """A runtime failure: the message is printed and the command exits with code 1."""


def _print_error(message: str) -> None:
    print(f"homeserver: {message}", file=sys.stderr)


def _load(config_path: Path) -> Config:
    """The config at `config_path`; every problem is printed and we exit 2 when it is bad."""
    try:
        return load_config(config_path)
    except ConfigError as exc:
        count = len(exc.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"homeserver: {config_path}: {count} configuration {noun}:"]
        lines += [f"  {problem}" for problem in exc.problems]
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def _cmd_generate_config(args: argparse.Namespace) -> int:
    from homeserver.generate import generate_config  # keeps `--help` fast

    outcome = generate_config(
        server_name=args.server_name,
        data_dir=Path(args.data_dir),
        output=Path(args.output),
        self_signed_tls=args.self_signed_tls,
    )
    for line in outcome:
        print(line)
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    config = _load(Path(args.config))
    from homeserver.server import run_server

    return run_server(config)


def _cmd_migrate(args: argparse.Namespace) -> int:
    config = _load(Path(args.config))
    from homeserver.server import run_migrate

    return run_migrate(config)


def _read_new_password(user: str) -> str:
    """Ask twice on the terminal; refuse when there is no terminal to ask on."""
    if not sys.stdin.isatty():
        raise UsageError("no --password given and standard input is not a terminal to ask on")
    password = getpass.getpass(f"Password for {user}: ")
    if not password:
        raise UsageError("the password must not be empty")
    if getpass.getpass("Repeat the password: ") != password:
        raise UsageError("the passwords do not match")
    return password


def _cmd_register_user(args: argparse.Namespace) -> int:
    config = _load(Path(args.config))
    password = args.password if args.password is not None else _read_new_password(args.user)
    if not password:
        raise UsageError("the password must not be empty")
    from homeserver.server import run_register_user

    return run_register_user(config, args.user, password, args.admin)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="homeserver",
        description="Veche, a sovereign Matrix homeserver.",
        epilog="Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad configuration.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    generate = commands.add_parser(
        "generate-config",
        help="write a new commented config and a new signing key",
        description="Write a commented config (never over an existing file) and, unless it "
        "exists, a new ed25519 signing key DIR/signing.key in Synapse's key-file format.",
    )
    generate.add_argument("--server-name", required=True, metavar="NAME",
                          help="the server name, optionally with a port (localhost:8448)")
    generate.add_argument("--data-dir", default="./data", metavar="DIR",
                          help="where keys, media and the embedded database live (./data)")
    generate.add_argument("--output", default="./homeserver.yaml", metavar="FILE",
                          help="the config file to write (./homeserver.yaml)")
    generate.add_argument("--self-signed-tls", action="store_true",
                          help="also write a development certificate DIR/tls.crt and key "
                          "DIR/tls.key and serve federation over TLS with them")
    generate.set_defaults(handler=_cmd_generate_config)

    run = commands.add_parser(
        "run", help="run the server in the foreground",
        description="Run the server in the foreground; SIGTERM or SIGINT shut it down cleanly.",
    )
    run.add_argument("--config", required=True, metavar="FILE", help="the config file")
    run.set_defaults(handler=_cmd_run)

    register = commands.add_parser(
        "register-user", help="create a local user directly in the database",
        description="Create a local user directly in the database. Without --password the "
        "password is asked for twice on the terminal.",
    )
    register.add_argument("--config", required=True, metavar="FILE", help="the config file")
    register.add_argument("user", metavar="USER", help="the localpart (alice) or user ID")
    register.add_argument("--password", metavar="P", help="the password (asked for if omitted)")
    register.add_argument("--admin", action="store_true", help="make the user a server admin")
    register.set_defaults(handler=_cmd_register_user)

    migrate = commands.add_parser(
        "migrate", help="apply pending database migrations and exit",
        description="Apply pending database migrations and exit.",
    )
    migrate.add_argument("--config", required=True, metavar="FILE", help="the config file")
    migrate.set_defaults(handler=_cmd_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # bad usage: argparse prints it and exits 2
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except UsageError as exc:
        _print_error(str(exc))
        return EXIT_USAGE
    except CommandFailed as exc:
        _print_error(str(exc))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
