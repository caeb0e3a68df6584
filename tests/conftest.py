import os
import sys
import tempfile
from pathlib import Path

# XLA's backend optimisation level 0 for the tests: the suite's time is mostly compilation of the
# solver (each test compiles small problems and runs them briefly), and level 0 compiles faster
# (measured on three solver-heavy tests: 83-90 s against 97 s; the whole suite 322 s against
# 333-387 s, benchmarks/results_tests.md). No fast-math either way, so the arithmetic is the same
# IEEE operations; every numerical check keeps its reference and tolerance. Set before JAX starts
# its backend; notebook kernels inherit it through the environment. A value the caller sets wins.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import jax  # noqa: E402

# the tests need 64-bit floats (the package leaves the switch to its caller)
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers.py

# One persistent compilation cache for the whole test session, fresh for each session (a clean CI
# run starts empty): a function compiled again with the same program (the fit's jitted closures in
# each fit test, the solvers in each notebook kernel) is then read from disk instead of compiled.
# The notebook kernels are separate processes: they inherit the cache through the environment.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="abscopal-jax-cache-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
