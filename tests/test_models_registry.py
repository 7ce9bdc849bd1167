"""Model registry: every model module registers on import; errors name what is available."""

import jax
import pytest

from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.models import FAMILIES, create, names


def test_importing_the_package_registers_the_fusion_models_and_the_discriminator():
    assert {"frequency_decoupled", "cross_attention", "caf_dense"} <= set(names("fusion"))
    assert "fuse4seg_v1" in names("discriminator")


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ConfigError) as err:
        create("fusion", "nope", key=jax.random.key(0))
    message = str(err.value)
    assert "'nope'" in message
    for name in names("fusion"):
        assert name in message


def test_bad_size_key_is_a_config_error_naming_the_model_and_key():
    with pytest.raises(ConfigError, match=r"frequency_decoupled.*widht"):
        create("fusion", "frequency_decoupled", key=jax.random.key(0), num_modalities=2, widht=3)


def test_missing_required_size_is_a_config_error():
    with pytest.raises(ConfigError, match="num_modalities"):
        create("fusion", "caf_dense", key=jax.random.key(0))


def test_families_are_the_documented_three():
    assert FAMILIES == ("fusion", "segmentation", "discriminator")
