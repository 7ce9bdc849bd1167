"""Every verb turns JAX's persistent compilation cache on, unless the user moved or disabled it."""

from fuse4seg_jax.cli import CACHE_MAX_BYTES, compilation_cache_env


def test_the_cache_lives_under_the_users_cache_folder_with_a_size_bound():
    env = compilation_cache_env({"HOME": "/home/ada"})
    assert env == {
        "JAX_COMPILATION_CACHE_DIR": "/home/ada/.cache/fuse4seg_jax/jax",
        "JAX_COMPILATION_CACHE_MAX_SIZE": str(CACHE_MAX_BYTES),
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
