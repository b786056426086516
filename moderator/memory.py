"""Hand freed heap memory back to the operating system between batches.

glibc's malloc keeps what a batch freed (tokenizer output, activations, Arrow buffers, JSON
strings) in its arenas, one per thread that allocated it, and reuses it only for requests that
fit the holes it left; over a long run that fragmentation shows up as resident memory growing with
the input. `malloc_trim(0)` returns every free page of every arena to the kernel (it has done so
for pages inside the heap, not just at its top, since glibc 2.8). It costs a few milliseconds; a
batch takes about a second. Elsewhere (musl, macOS, Windows) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

try:
    _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    _trim.argtypes = [ctypes.c_size_t]
    _trim.restype = ctypes.c_int
except (OSError, AttributeError):  # not glibc
    _trim = None


def release() -> bool:
    """Give free heap pages back to the OS; whether anything was released (False without glibc)."""
    return bool(_trim(0)) if _trim is not None else False
