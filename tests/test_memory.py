import ctypes.util
import sys

import pytest

from moderator import memory


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux") or "libc" not in (ctypes.util.find_library("c") or ""),
                    reason="malloc_trim is glibc's")
def test_release_gives_freed_heap_pages_back():
    # 60 KB blocks stay below glibc's mmap threshold, so they live in the heap; the last one stays
    # allocated, so free() cannot shrink the heap from its top: the pages stay resident until trimmed.
    blocks = [bytearray(60_000) for _ in range(2000)]  # ~120 MB, written (resident)
    keep = blocks[-1]
    del blocks
    before = rss_mb()
    assert memory.release() is True
    after = rss_mb()
    assert before - after > 60, (before, after)
    assert len(keep) == 60_000
