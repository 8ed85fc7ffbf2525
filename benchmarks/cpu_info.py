"""The machine a CPU figure came from: model, instruction set and the measured float32 matrix-product peak.

Every CPU benchmark prints ``describe()`` first and quotes its rates as a fraction of ``matmul_peak()``, measured
in the same run: the same code reaches very different rates on AVX2, AVX-512 and AMX machines.

  python benchmarks/cpu_info.py
"""

from __future__ import annotations

import functools
import os
import platform
import statistics
import time

VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_fp16")


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def instruction_set() -> str:
    """The widest vector extension: 'AMX', 'AVX-512', 'AVX2' or the machine name (e.g. aarch64)."""
    flags = cpu_flags()
    if "amx_tile" in flags:
        return "AMX"
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2"
    return platform.machine()


@functools.cache
def matmul_peak(n: int = 2048, repeats: int = 7) -> float:
    """Median GFLOP/s of an n x n float32 matrix product in XLA on this machine's CPU (all its cores)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    product = jax.jit(lambda x, y: x @ y)
    jax.block_until_ready(product(a, a))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(product(a, a))
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def describe() -> str:
    flags = sorted(cpu_flags() & set(VECTOR_FLAGS))
    return (
        f"CPU: {cpu_model()}, {os.cpu_count()} cores, instruction set {instruction_set()} "
        f"({' '.join(flags) or 'no x86 vector flags'}); XLA float32 matmul peak {matmul_peak():.0f} GFLOP/s"
    )


if __name__ == "__main__":
    print(describe())
