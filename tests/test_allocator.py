"""divrec.allocator: glibc's thresholds are set (an 8 MB block then comes from the heap, not a fresh mmap), and the
user's own malloc choices are left alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from divrec.allocator import glibc, tune_malloc

needs_glibc = pytest.mark.skipif(glibc() is None or not hasattr(glibc(), "mallinfo2"), reason="glibc >= 2.33 only")

PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from divrec.allocator import tune_malloc

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                          "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    tuned = tune_malloc() if sys.argv[1] == "tune" else False
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(8 << 20)  # one fused-CE logit block
    mapped = libc.mallinfo2().hblkhd - before
    libc.free(block)
    print(int(tuned), mapped)
    """
)


def probe(mode: str) -> tuple[bool, int]:
    env = {"PATH": "/usr/bin:/bin"}  # none of the user's malloc settings
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env=env)
    tuned, mapped = out.stdout.split()
    return bool(int(tuned)), int(mapped)


@needs_glibc
def test_tuned_malloc_serves_an_8mb_block_from_the_heap() -> None:
    assert probe("plain") == (False, pytest.approx(8 << 20, rel=0.01))  # glibc's default: a fresh mmap
    assert probe("tune") == (True, 0)  # tuned: from the heap, so the next step reuses it


@pytest.mark.parametrize(
    "environ",
    [
        {"DIVREC_MALLOC": "default"},
        {"DIVREC_MALLOC": " Default "},
        {"MALLOC_MMAP_THRESHOLD_": "1048576"},
        {"MALLOC_TRIM_THRESHOLD_": "0"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"},
        {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
    ],
)
def test_the_users_own_malloc_choice_is_left_alone(environ: dict[str, str]) -> None:
    assert tune_malloc(environ) is False


@needs_glibc
def test_tune_malloc_is_idempotent_and_ignores_unrelated_preloads() -> None:
    assert tune_malloc({"LD_PRELOAD": "libgomp.so.1"}) is True
    assert tune_malloc({}) is True
