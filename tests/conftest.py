import jax
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture(scope="session")
def ab():
    import abscopal

    abscopal.enable_x64()
    return abscopal
