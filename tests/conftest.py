import sys
from pathlib import Path

import jax

# the tests need 64-bit floats (the package leaves the switch to its caller)
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers.py
