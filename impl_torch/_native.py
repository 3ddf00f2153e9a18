"""The fused CPU kernels of ``_native.c``: GHM-C and GHM-R in one pass forward (region index,
exact counts and per-region loss sums) and one pass backward, for float32 CPU tensors.

The C source is compiled at first use with the system's C compiler (the one torch.compile's CPU
backend needs too) into a per-user cache (``$GHM_LOSS_CACHE``, else ``$XDG_CACHE_HOME/ghm_loss`` or
``~/.cache/ghm_loss``), keyed by the source, the compiler and the CPU, and loaded with ctypes;
the ops release the GIL and split large inputs into chunks of 2^18 entries over
``torch.get_num_threads()`` threads of torch's own OpenMP runtime (the library links the
``libgomp.so.1`` that torch has loaded), so they add no threads of their own. They are
``torch.library`` custom ops, so ``torch.compile(fullgraph=True)`` calls them as they are.

Where the kernels cannot serve a call (no compiler, another device or dtype, a non-contiguous
input, more than 254 regions, ``GHM_LOSS_NATIVE=0`` in the environment, or ``use_native(False)``)
the losses take their pure-torch path, which computes the same numbers (tests/test_native.py
holds the two to each other).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

from ._checks import positive

SOURCE = Path(__file__).with_name("_native.c")
MAX_BINS = 254  # region index, spare slot and poison slot in one byte
CHUNK = 1 << 18  # entries per chunk: the unit of work of a thread
LW_NONE, LW_F32, LW_U8, LW_F32_ROW, LW_U8_ROW = range(5)

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_switch = [os.environ.get("GHM_LOSS_NATIVE", "1") != "0"]


def _cache_dir() -> Path:
    if os.environ.get("GHM_LOSS_CACHE"):
        return Path(os.environ["GHM_LOSS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ghm_loss"


def _cpu_signature() -> str:
    """What -march=native compiled for: a library built on another CPU (a shared home folder) must
    not be loaded here."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags", "Features"))][:2]
        return "".join(lines)
    except OSError:
        return platform.processor() + platform.machine()


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


# Tried in order: OpenMP (torch's own runtime: the library's libgomp.so.1 is the one torch has
# loaded) with vector math from glibc's libmvec (expf, log1pf: glibc >= 2.35), without libmvec,
# without OpenMP (one thread), without -march=native. On x86 the first also asks for 512-bit
# vectors where the CPU has them (GCC and Clang default to 256 bits on AVX-512 CPUs; the forward
# loop, bound by expf and log1pf, is about 10% faster with 512); elsewhere the flag is unknown.
_WIDE = ["-mprefer-vector-width=512"] if platform.machine().lower() in ("x86_64", "amd64") else []
_FLAVOURS = (
    ["-march=native", *_WIDE, "-fopenmp", "-DGHM_MVEC"],
    ["-march=native", "-fopenmp", "-DGHM_MVEC"],
    ["-march=native", "-fopenmp"],
    ["-march=native", "-fopenmp-simd"],
    ["-fopenmp-simd"],
)
_COMMON = ["-O3", "-fno-math-errno", "-fPIC", "-shared", "-std=c99"]


def _build() -> ctypes.CDLL | None:
    cc = _compiler()
    if cc is None or sys.platform == "win32":
        return None
    source = SOURCE.read_bytes()
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    errors = []
    for flavour in _FLAVOURS:
        flags = _COMMON + flavour
        libs = ["-lmvec", "-lm"] if "-DGHM_MVEC" in flavour else ["-lm"]
        key = hashlib.sha256(
            b"\0".join([source, " ".join(flags + libs).encode(), version.encode(), _cpu_signature().encode()])
        ).hexdigest()[:16]
        target = _cache_dir() / f"ghm_native_{key}.so"
        if not target.exists():
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
                os.close(fd)
                proc = subprocess.run(
                    [cc, *flags, str(SOURCE), "-o", tmp, *libs], capture_output=True, text=True, timeout=300
                )
                if proc.returncode != 0:
                    os.unlink(tmp)
                    errors.append(proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"])
                    continue
                os.replace(tmp, target)  # atomic: a concurrent build of the same key writes the same file
            except (OSError, subprocess.SubprocessError) as exc:
                errors.append([str(exc)])
                continue
        try:
            return _declare(ctypes.CDLL(str(target)))
        except OSError as exc:
            errors.append([str(exc)])
    warnings.warn(
        f"impl_torch: the fused CPU kernels could not be built ({'; '.join(e[0] for e in errors)}); "
        "using the pure-torch path",
        RuntimeWarning,
        stacklevel=3,
    )
    return None


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    p, i32, i64, f32 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64, ctypes.c_float
    lib.ghm_forward_chunks.argtypes = [i32, p, p, p, i32, i64, i64, i64, i32, i32, i32, f32, p, p, p]
    lib.ghm_forward_chunks.restype = ctypes.c_int
    lib.ghm_backward_chunks.argtypes = [i32, p, p, p, p, i64, i64, i32, i32, f32, p, p, p]
    lib.ghm_backward_chunks.restype = None
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernels, built on first use; None where they cannot be."""
    global _lib, _tried
    if not _tried:
        with _lock:
            if not _tried:
                _lib = _build()
                _tried = True
    return _lib


def enabled() -> bool:
    return _switch[0]


@contextmanager
def use_native(on: bool):
    """Within the block, the losses use the fused kernels (True, where they can) or only the
    pure-torch path (False). Read when a call is made (or traced, under torch.compile)."""
    before = _switch[0]
    _switch[0] = on
    try:
        yield
    finally:
        _switch[0] = before


@torch.compiler.assume_constant_result
def available() -> bool:
    """Switched on and built (a constant for torch.compile: read when the call is traced)."""
    return _switch[0] and library() is not None


def serves(pred: torch.Tensor, bins: int, *, diagnostics: bool = False) -> bool:
    """Whether the kernels take this call: float32 CPU pred, contiguous, bins <= 254, built, and no
    diagnostics asked for (their hook lives in the pure-torch path)."""
    return (
        not diagnostics
        and pred.device.type == "cpu"
        and pred.dtype == torch.float32
        and bins <= MAX_BINS
        and pred.numel() > 0
        and pred.is_contiguous()
        and available()
    )


def weight_kind(label_weight: torch.Tensor | None, pred: torch.Tensor):
    """(label weight tensor for the kernel, its kind), converting what the kernel does not read."""
    if label_weight is None:
        return None, LW_NONE
    per_row = label_weight.dim() != pred.dim()
    if label_weight.dtype == torch.bool:
        lw, kind = label_weight.view(torch.uint8), (LW_U8_ROW if per_row else LW_U8)
    elif label_weight.dtype == torch.float32:
        lw, kind = label_weight, (LW_F32_ROW if per_row else LW_F32)
    else:  # compared in its own dtype, on its bits (a float64 1e-310 is valid, also under flush-to-zero)
        lw, kind = positive(label_weight).view(torch.uint8), (LW_U8_ROW if per_row else LW_U8)
    return lw.contiguous(), kind


def chunks(n: int) -> int:
    """Number of fixed-size chunks of a call: per-chunk sums, added in chunk order, make a result
    independent of the number of threads (bit-identical on 1 thread and on all)."""
    return -(-n // CHUNK)


def _ptr(a: torch.Tensor | None):
    return None if a is None or a.numel() == 0 else a.data_ptr()


def _forward_impl(
    x: torch.Tensor,
    t: torch.Tensor,
    lw: torch.Tensor | None,
    lw_kind: int,
    bins: int,
    kind: str,
    check_t: bool,
    mu: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ind uint8 shaped like x, counts int64 (bins + 2), per-region loss sums float64 (bins + 2)):
    slot ``bins`` holds the masked entries, ``bins + 1`` the valid entries that poison the batch."""
    n, slots = x.numel(), bins + 2
    cols = x.shape[-1] if x.dim() else 1
    ind = torch.empty(x.shape, dtype=torch.uint8)
    counts = torch.empty((chunks(n), slots), dtype=torch.int64)
    sums = torch.empty((chunks(n), slots), dtype=torch.float64)
    lib = library()
    assert lib is not None, "the fused kernels are called only where available() has loaded them"
    status = lib.ghm_forward_chunks(
        0 if kind == "c" else 1,
        x.data_ptr(),
        t.data_ptr(),
        _ptr(lw),
        lw_kind,
        cols,
        n,
        CHUNK,
        torch.get_num_threads(),
        bins,
        int(check_t),
        mu,
        ind.data_ptr(),
        counts.data_ptr(),
        sums.data_ptr(),
    )
    if status:
        raise ValueError(f"the native kernels take at most {MAX_BINS} bins, got {bins}")
    return ind, counts.sum(0), sums.sum(0)


_forward_op = torch.library.custom_op("ghm_loss::native_forward", mutates_args=())(_forward_impl)


@_forward_op.register_fake
def _(x, t, lw, lw_kind, bins, kind, check_t, mu):
    return (
        x.new_empty(x.shape, dtype=torch.uint8),
        x.new_empty(bins + 2, dtype=torch.int64),
        x.new_empty(bins + 2, dtype=torch.float64),
    )


def _backward_impl(
    x: torch.Tensor,
    t: torch.Tensor,
    ind: torch.Tensor,
    table: torch.Tensor,
    bins: int,
    kind: str,
    mu: float,
    need_x: bool,
    need_t: bool,
    need_loss: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """table[ind] * dL/dx, table[ind] * dL/dt and table[ind] * L per entry (0 where masked), each
    an empty tensor unless asked for; ``table`` has bins + 2 float32 values."""
    table = table.to(torch.float32).contiguous()
    outs = [
        torch.empty(x.shape, dtype=torch.float32) if need else x.new_empty(0) for need in (need_x, need_t, need_loss)
    ]
    lib = library()
    assert lib is not None, "the fused kernels are called only where available() has loaded them"
    lib.ghm_backward_chunks(
        0 if kind == "c" else 1,
        x.data_ptr(),
        t.data_ptr(),
        ind.data_ptr(),
        table.data_ptr(),
        x.numel(),
        CHUNK,
        torch.get_num_threads(),
        bins,
        mu,
        *(_ptr(o) for o in outs),
    )
    grad_x, grad_t, loss = outs
    return grad_x, grad_t, loss


_backward_op = torch.library.custom_op("ghm_loss::native_backward", mutates_args=())(_backward_impl)


@_backward_op.register_fake
def _(x, t, ind, table, bins, kind, mu, need_x, need_t, need_loss):
    return tuple(x.new_empty(x.shape if need else (0,), dtype=torch.float32) for need in (need_x, need_t, need_loss))


def native_forward(x, t, lw, lw_kind: int, bins: int, kind: str, check_t: bool, mu: float):
    """The forward kernel: an opaque op under torch.compile, a plain call in eager (no dispatch)."""
    op = _forward_op if torch.compiler.is_compiling() else _forward_impl
    return op(x, t, lw, lw_kind, bins, kind, check_t, mu)


def native_backward(x, t, ind, table, bins: int, kind: str, mu: float, need_x: bool, need_t: bool, need_loss: bool):
    op = _backward_op if torch.compiler.is_compiling() else _backward_impl
    return op(x, t, ind, table, bins, kind, mu, need_x, need_t, need_loss)
