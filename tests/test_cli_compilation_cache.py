"""Every verb turns JAX's persistent compilation cache on, unless the user moved or disabled it,
and XLA:CPU's YNNPACK fusions off, unless the user's XLA_FLAGS choose them."""

from fuse4seg_jax.cli import CACHE_MAX_BYTES, YNN_OFF, compilation_cache_env, xla_flags_env


def test_the_cache_lives_under_the_users_cache_folder_with_a_size_bound():
    env = compilation_cache_env({"HOME": "/home/ada"})
    assert env == {
        "JAX_COMPILATION_CACHE_DIR": "/home/ada/.cache/fuse4seg_jax/jax",
        "JAX_COMPILATION_CACHE_MAX_SIZE": str(CACHE_MAX_BYTES),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    assert compilation_cache_env({"HOME": "/h", "XDG_CACHE_HOME": "/fast"})["JAX_COMPILATION_CACHE_DIR"] == (
        "/fast/fuse4seg_jax/jax"
    )


def test_the_switch_moves_or_disables_it_and_a_users_jax_setting_wins():
    moved = compilation_cache_env({"HOME": "/h", "FUSE4SEG_COMPILATION_CACHE": "/scratch/jit"})
    assert moved["JAX_COMPILATION_CACHE_DIR"] == "/scratch/jit"
    for off in ("off", "0", "false", "NO"):
        assert compilation_cache_env({"HOME": "/h", "FUSE4SEG_COMPILATION_CACHE": off}) == {}
    assert compilation_cache_env({"HOME": "/h", "JAX_COMPILATION_CACHE_DIR": "/mine"}) == {}


def test_a_users_size_bound_is_kept():
    env = compilation_cache_env({"HOME": "/h", "JAX_COMPILATION_CACHE_MAX_SIZE": "123"})
    assert env["JAX_COMPILATION_CACHE_MAX_SIZE"] == "123"


def test_a_users_compile_time_threshold_is_kept():
    env = compilation_cache_env({"HOME": "/h", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "2"})
    assert env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "2"


def test_ynnpack_fusions_are_turned_off_unless_the_users_flags_choose():
    assert xla_flags_env({}) == {"XLA_FLAGS": YNN_OFF}
    assert xla_flags_env({"XLA_FLAGS": "--xla_dump_to=/d"}) == {"XLA_FLAGS": f"--xla_dump_to=/d {YNN_OFF}"}
    assert xla_flags_env({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=individual_dot"}) == {}
