"""Password hashing for local accounts.

argon2id (RFC 9106) because it is memory-hard — each guess costs tens of MiB of RAM as well as
CPU time, which defeats GPU and ASIC cracking far better than bcrypt or PBKDF2 — and it is the
first choice of the OWASP Password Storage Cheat Sheet. We use OWASP's argon2id profile
(m=19 MiB, t=2, p=1): a few tens of milliseconds and one core per hash, where argon2-cffi's
default (RFC 9106's t=3, m=64 MiB, p=4) took ~0.5 s and 64 MiB per login on a 2-core server.
Hashes are PHC strings that carry their own parameters, so raising the cost later only needs
`needs_rehash` at the next login, and a hash made with any cost verifies under any other.

One `PasswordHashing` per process, built by the composition root (homeserver/app) and handed
to the services that hash or verify; tests build one with `CHEAP_COST`.

Hashing takes tens of milliseconds of CPU; the async variants run it on one dedicated worker
thread so the event loop keeps serving other requests. One thread, not the default pool: glibc
gives each thread its own malloc arena, and a pool's threads would each keep an arena. The
19 MiB of a hash go back to the OS when it ends because homeserver/memory.py fixes glibc's mmap
threshold (with glibc's default, growing threshold every registration after the first left
19 MiB in the heap: bench/RESULTS.md, docs/memory.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Argon2Cost:
    """argon2id parameters (RFC 9106 section 3.1): passes, memory in KiB, lanes."""

    time_cost: int
    memory_cost_kib: int
    parallelism: int


# OWASP Password Storage Cheat Sheet, argon2id: m=19 MiB, t=2, p=1.
OWASP_COST: Final = Argon2Cost(time_cost=2, memory_cost_kib=19 * 1024, parallelism=1)
# For tests only: about the least argon2 accepts (m >= 8 * p KiB), well under a millisecond.
CHEAP_COST: Final = Argon2Cost(time_cost=1, memory_cost_kib=8, parallelism=1)


class PasswordHashing:
    """argon2id hashing and verification with one cost, on one worker thread when async."""

    def __init__(self, cost: Argon2Cost = OWASP_COST) -> None:
        self.cost = cost
        self._hasher = PasswordHasher(
            time_cost=cost.time_cost,
            memory_cost=cost.memory_cost_kib,
            parallelism=cost.parallelism,
        )
        self._executor: ThreadPoolExecutor | None = None  # started at the first async hash

    def hash(self, password: str) -> str:
        """A PHC string `$argon2id$v=19$m=…,t=…,p=…$salt$hash` with a fresh random salt."""
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        """True if `password` matches; False for a wrong password or an unreadable hash."""
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True if the hash was made with other parameters than this hasher's."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    async def hash_async(self, password: str) -> str:
        return await self._off_loop(lambda: self.hash(password))

    async def verify_async(self, password_hash: str, password: str) -> bool:
        return await self._off_loop(lambda: self.verify(password_hash, password))

    def close(self) -> None:
        """Stop the worker thread (a later async call starts a new one)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    async def _off_loop(self, function: Callable[[], _T]) -> _T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argon2")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)
