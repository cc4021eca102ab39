"""A real Synapse on loopback for the interop tests (issue 5, "Interop with Synapse").

Started and stopped through `../shared/tools/synapse/synapse-peer.sh` (relative to the repository),
which installs matrix-synapse from PyPI into a venv on first use. Synapse calls itself
`localhost:<federation port>`, serves its client API over plain HTTP and federation over HTTPS
with a self-signed certificate, and reaches `localhost:PORT` peers at https://127.0.0.1:PORT.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
PEER_SCRIPT = REPO.parent / "shared" / "tools" / "synapse" / "synapse-peer.sh"
# The venv synapse-peer.sh installs Synapse into; kept between runs so that a second run is quick.
DEFAULT_VENV = Path(os.environ.get("SYNAPSE_VENV", "/tmp/veche-interop-synapse-venv"))
START_TIMEOUT_S = 600.0  # the first start includes `pip install matrix-synapse`


def interop_required() -> bool:
    """VECHE_INTEROP=1 (as in CI) turns every failure to provide Synapse into a test error."""
    return os.environ.get("VECHE_INTEROP") == "1"


class SynapseUnavailable(RuntimeError):
    """Synapse could not be installed or started."""


@dataclass
class SynapsePeer:
    directory: Path
    client_port: int
    federation_port: int

    @property
    def server_name(self) -> str:
        return f"localhost:{self.federation_port}"

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "homeserver.log"

    def start(self) -> None:
        if not PEER_SCRIPT.is_file():
            raise SynapseUnavailable(f"{PEER_SCRIPT} not found")
        env = {**os.environ, "SYNAPSE_VENV": str(DEFAULT_VENV)}
        try:
            subprocess.run(
                [
                    "bash",
                    str(PEER_SCRIPT),
                    "start",
                    str(self.directory),
                    str(self.client_port),
                    str(self.federation_port),
                ],
                env=env,
                check=True,
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT_S,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            output = f"{exc.stdout or ''}{exc.stderr or ''}"[-2000:]
            raise SynapseUnavailable(f"synapse-peer.sh start failed: {output}") from exc

    def stop(self) -> None:
        subprocess.run(
            ["bash", str(PEER_SCRIPT), "stop", str(self.directory)],
            check=False,
            capture_output=True,
            timeout=30,
        )

    def log_tail(self, lines: int = 60) -> str:
        """The end of Synapse's log: why it refused our requests or events."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no homeserver.log)"

    async def register(self, http: aiohttp.ClientSession, localpart: str) -> tuple[str, str]:
        """Registers through the open client API (m.login.dummy); (user_id, access_token)."""
        body: dict[str, Any] = {
            "username": localpart,
            "password": "a long enough password",
            "auth": {"type": "m.login.dummy"},
        }
        async with http.post(f"{self.client_url}/_matrix/client/v3/register", json=body) as resp:
            reply = await resp.json()
            if resp.status == 401 and "session" in reply:
                body["auth"]["session"] = reply["session"]
                async with http.post(
                    f"{self.client_url}/_matrix/client/v3/register", json=body
                ) as again:
                    reply = await again.json()
                    assert again.status == 200, reply
            else:
                assert resp.status == 200, reply
        return str(reply["user_id"]), str(reply["access_token"])
