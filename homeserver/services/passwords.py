"""Password hashing for local accounts.

argon2id (RFC 9106) because it is memory-hard — each guess costs tens of MiB of RAM as well as
CPU time, which defeats GPU and ASIC cracking far better than bcrypt or PBKDF2 — and it is the
first choice of the OWASP Password Storage Cheat Sheet. We use OWASP's argon2id profile
(m=19 MiB, t=2, p=1): a few tens of milliseconds and one core per hash, where argon2-cffi's
default (RFC 9106's t=3, m=64 MiB, p=4) took ~0.5 s and 64 MiB per login on a 2-core server.
Hashes are PHC strings that carry their own parameters, so raising the cost later only needs
`needs_rehash` at the next login.

Hashing takes tens of milliseconds of CPU; the async variants run it on one dedicated worker
thread so the event loop keeps serving other requests. One thread, not the default pool: glibc
gives each thread its own malloc arena and keeps every arena's 19 MiB after the hash, which made
registrations grow the server's RSS by ~100 MB (bench/RESULTS.md); we also hand freed memory
back to the OS after each hash.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher: Final = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True if `password` matches; False for a wrong password or an unreadable hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True if the hash was made with weaker parameters than the current ones."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


_T = TypeVar("_T")
_executor: Final = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argon2")


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)  # glibc only
    return trim


_malloc_trim: Final = _load_malloc_trim()


def _then_trim(function: Callable[[], _T]) -> _T:
    try:
        return function()
    finally:
        if _malloc_trim is not None:
            _malloc_trim(0)


async def _off_loop(function: Callable[[], _T]) -> _T:
    return await asyncio.get_running_loop().run_in_executor(_executor, _then_trim, function)


async def hash_password_async(password: str) -> str:
    return await _off_loop(lambda: hash_password(password))


async def verify_password_async(password_hash: str, password: str) -> bool:
    return await _off_loop(lambda: verify_password(password_hash, password))
