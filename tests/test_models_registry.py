"""Model registry: every model registers on import with paper and demo sizes; errors name the choices."""

import jax
import pytest
from flax import nnx

from fuse4seg_jax.errors import ConfigError
from fuse4seg_jax.models import FAMILIES, RUNTIME_ARGUMENTS, build, create, names, register, sizes


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


def test_every_family_has_a_model_and_no_other_family_is_accepted():
    assert all(names(family) for family in FAMILIES)
    with pytest.raises(ValueError, match="unknown model family 'classifier'"):
        register("classifier", "resnet", paper={}, demo={})


def test_every_model_declares_the_same_sizes_at_both_presets_and_no_runtime_argument():
    for family in FAMILIES:
        for name in names(family):
            paper, demo = sizes(family, name, "paper"), sizes(family, name, "demo")
            assert paper.keys() == demo.keys() and paper.keys()
            assert not paper.keys() & set(RUNTIME_ARGUMENTS[family])
    with pytest.raises(ValueError, match=r"demo sizes \['widht'\] have no paper value"):
        register("fusion", "typo", paper={"width": 1}, demo={"widht": 2})
    with pytest.raises(ValueError, match=r"runtime arguments \['num_modalities'\]"):
        register("fusion", "typo", paper={"num_modalities": 2}, demo={})
    assert "typo" not in names("fusion")


def test_sizes_not_given_take_their_paper_value():
    module = nnx.eval_shape(lambda: build("fusion", "caf_dense", rngs=nnx.Rngs(0), num_modalities=2, width=4))
    assert module.stem.out_features == 4
    assert len(module.blocks) == sizes("fusion", "caf_dense")["blocks"]


def test_models_command_counts_parameters_at_both_presets(capsys):
    from fuse4seg_jax.cli import main

    assert main(["models", "--family", "fusion"]) == 0
    rows = {line.split()[1]: line.split()[2:] for line in capsys.readouterr().out.splitlines()[1:]}
    assert sorted(rows) == names("fusion")
    paper, demo = (int(n.replace(",", "")) for n in rows["frequency_decoupled"])
    assert paper == 1_188_272 and demo < paper / 10  # CDDFuse's ~1.2 M; the demo is far smaller
