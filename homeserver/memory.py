"""Process memory settings for `homeserver run` (measurements: docs/memory.md).

glibc's malloc serves a request above its mmap threshold (128 KiB at first) with its own
mapping and unmaps it on free, but it raises that threshold to the size of any such block that
is freed, up to 32 MiB, and the trim threshold to twice that. After the first argon2id hash
(19 MiB, services/passwords.py) every later one was served from the heap and its 19 MiB stayed
in the process: RSS grew by ~19 MB with the first registrations (bench/RESULTS.md). Fixing the
thresholds (mallopt(3)) keeps such blocks in their own mappings, so they go back to the OS as
soon as they are freed; small and medium allocations still come from the heap as before.

`settle_after_startup` runs once the listeners are up: a full collection frees the start-up
garbage (configuration parsing, migrations), `gc.freeze` moves what is left — modules, classes,
services, all alive for the whole run — out of the collector's generations so later full
collections do not walk it again, and `malloc_trim` returns freed heap pages to the OS.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from typing import Final

logger = logging.getLogger(__name__)

# mallopt(3) parameter numbers, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3

# Blocks from 1 MiB up get their own mapping: argon2's 19 MiB and the odd huge body, not the
# sync responses and database buffers (tens to hundreds of KiB) that the heap recycles well.
MMAP_THRESHOLD: Final = 1024 * 1024
# Free memory at the top of the heap is returned above this (glibc's own rule: twice the mmap
# threshold), so the heap does not shrink and grow again on every burst.
TRIM_THRESHOLD: Final = 2 * MMAP_THRESHOLD


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def tune_malloc(
    mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD
) -> bool:
    """Fix glibc's mmap and trim thresholds; False (and nothing changed) without glibc."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
    done = bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold)) and done
    if not done:
        logger.warning("mallopt refused the malloc thresholds; RSS may grow after hashing")
    return done


def release_free_memory() -> bool:
    """Return the heap's free pages to the OS (glibc malloc_trim(3)); False without glibc."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:
        return False
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    trim(0)
    return True


def settle_after_startup() -> None:
    """Collect start-up garbage, freeze the survivors out of the collector, trim the heap."""
    gc.collect()
    gc.freeze()
    release_free_memory()
