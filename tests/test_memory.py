"""homeserver.memory: fixed malloc thresholds keep argon2's 19 MiB out of the heap."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import pytest

from homeserver.memory import release_free_memory, settle_after_startup

_GLIBC = sys.platform.startswith("linux")

# Hashes with the production cost (19 MiB each) on the worker thread, then prints how much the
# resident set grew, in KiB.
_HASH_AND_MEASURE = textwrap.dedent(
    """
    import asyncio, sys
    from homeserver.memory import tune_malloc
    from homeserver.services.passwords import PasswordHashing

    def rss_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    if sys.argv[1] == "tuned":
        assert tune_malloc()

    async def main():
        hashing = PasswordHashing()
        await hashing.hash_async("warm up")
        before = rss_kib()
        for n in range(3):
            await hashing.hash_async(f"pw{n}")
        print(rss_kib() - before)

    asyncio.run(main())
    """
)


def _growth_kib(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _HASH_AND_MEASURE, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout.strip())


@pytest.mark.skipif(not _GLIBC, reason="mallopt and /proc are glibc/Linux features")
def test_with_fixed_thresholds_hashing_leaves_no_19_mib_in_the_heap() -> None:
    assert _growth_kib("tuned") < 4 * 1024


@pytest.mark.skipif(not _GLIBC, reason="mallopt and /proc are glibc/Linux features")
def test_without_them_glibc_keeps_a_hash_worth_of_memory() -> None:
    # The behaviour tune_malloc exists for: if this stops holding, the tuning can go.
    assert _growth_kib("default") > 15 * 1024


def test_settling_freezes_the_survivors_out_of_the_collector() -> None:
    try:
        settle_after_startup()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


@pytest.mark.skipif(not _GLIBC, reason="malloc_trim is glibc's")
def test_free_memory_can_be_released() -> None:
    assert release_free_memory()
