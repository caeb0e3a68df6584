import os
import sys
import tempfile
from pathlib import Path

import jax

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
