"""PasswordHashing: argon2id hashes that verify, carry their cost, and run off the loop."""

from __future__ import annotations

import threading

from homeserver.services.passwords import CHEAP_COST, OWASP_COST, PasswordHashing


def test_a_hash_verifies_its_password_and_no_other() -> None:
    hashing = PasswordHashing(CHEAP_COST)
    password_hash = hashing.hash("correct horse")
    assert password_hash.startswith("$argon2id$")
    assert hashing.verify(password_hash, "correct horse")
    assert not hashing.verify(password_hash, "Correct horse")


def test_the_same_password_hashes_differently_each_time() -> None:
    hashing = PasswordHashing(CHEAP_COST)
    assert hashing.hash("pw") != hashing.hash("pw")


def test_an_unreadable_hash_verifies_nothing_and_needs_a_rehash() -> None:
    hashing = PasswordHashing(CHEAP_COST)
    assert not hashing.verify("not a hash", "pw")
    assert not hashing.verify("", "")
    assert hashing.needs_rehash("not a hash")


def test_the_hash_carries_its_cost_so_any_hasher_verifies_it() -> None:
    cheap = PasswordHashing(CHEAP_COST)
    password_hash = cheap.hash("pw")
    assert "m=8,t=1,p=1" in password_hash
    production = PasswordHashing(OWASP_COST)
    assert production.verify(password_hash, "pw")
    assert production.needs_rehash(password_hash)
    assert not cheap.needs_rehash(password_hash)


def test_the_production_cost_is_owasps_argon2id_profile() -> None:
    assert (OWASP_COST.memory_cost_kib, OWASP_COST.time_cost, OWASP_COST.parallelism) == (
        19 * 1024,
        2,
        1,
    )
    assert "m=19456,t=2,p=1" in PasswordHashing().hash("pw")


async def test_async_hashing_runs_on_one_worker_thread_off_the_event_loop() -> None:
    hashing = PasswordHashing(CHEAP_COST)
    threads: set[str] = set()
    original = hashing.hash

    def recording_hash(password: str) -> str:
        threads.add(threading.current_thread().name)
        return original(password)

    hashing.hash = recording_hash  # type: ignore[method-assign]
    try:
        hashes = [await hashing.hash_async(f"pw{n}") for n in range(3)]
        assert await hashing.verify_async(hashes[2], "pw2")
        assert not await hashing.verify_async(hashes[2], "pw1")
    finally:
        hashing.close()
    assert len(threads) == 1
    assert threading.current_thread().name not in threads
    assert next(iter(threads)).startswith("argon2")


async def test_closing_stops_the_worker_and_a_later_call_starts_a_new_one() -> None:
    hashing = PasswordHashing(CHEAP_COST)
    first = await hashing.hash_async("pw")
    hashing.close()
    assert hashing.verify(first, "pw")
    assert await hashing.verify_async(first, "pw")
    hashing.close()
