"""What a config chooses, built from it: the hypergradient solver and each model's arguments.

Both read only the chosen entry of a registry-derived table (``bilevel.options.<solver>``,
``model.<family>_sizes.<name>``); the other entries are there so that one override switches to
another solver or model. Errors name the config key at fault.
"""

from __future__ import annotations

from typing import Any

import ml_collections

import bilevel
from fuse4seg_jax.errors import ConfigError


def solver_from_config(config: ml_collections.ConfigDict) -> bilevel.Solver:
    """The solver ``bilevel.solver`` built from its own options, ``bilevel.options.<solver>``.

    Raises:
        ConfigError: an unknown solver, a solver without options in the config (registered after
            the config was built), or an option the solver rejects, naming
            ``bilevel.options.<solver>.<option>``.
    """
    name = config.bilevel.solver
    if name not in bilevel.solver_names():
        raise ConfigError(
            f"config key bilevel.solver = {name!r}; expected one of {', '.join(bilevel.solver_names())}"
        )
    if name not in config.bilevel.options:
        raise ConfigError(
            f"config key bilevel.options.{name} is missing: solver {name!r} was registered after the "
            f"config was built; register it first (e.g. at the top of the config file)"
        )
    options = config.bilevel.options[name].to_dict()
    try:
        return bilevel.make_solver(name, **options)
    except bilevel.SolverConfigError as err:
        raise ConfigError(f"config key {_option_at_fault(name, options)}: {err}") from err


def _option_at_fault(name: str, options: dict[str, Any]) -> str:
    """The key of the first option that solver ``name`` rejects on its own.

    Returns:
        ``bilevel.options.<name>.<option> = value`` for the first option rejected with the others
        at their defaults; ``bilevel.options.<name>`` when only a combination is rejected.
    """
    for option, value in options.items():
        try:
            bilevel.make_solver(name, **{option: value})
        except bilevel.SolverConfigError:
            return f"bilevel.options.{name}.{option} = {value!r}"
    return f"bilevel.options.{name}"


def model_arguments(config: ml_collections.ConfigDict, family: str, num_modalities: int) -> dict[str, Any]:
    """Keyword arguments of the configured ``family`` model: its runtime arguments and its sizes.

    Arguments:
        config: a config from ``configs/``.
        family: ``fusion``, ``segmentation`` or ``discriminator``.
        num_modalities: N, the channels of the input images.

    Returns:
        ``model.<family>_sizes.<model.<family>>`` plus what the family's constructor takes from
        the data and the task (``fuse4seg_jax.models.RUNTIME_ARGUMENTS``).

    Raises:
        ConfigError: the chosen model has no entry in ``model.<family>_sizes``.
    """
    name, table = config.model[family], config.model[f"{family}_sizes"]
    if name not in table:
        raise ConfigError(
            f"config key model.{family}_sizes.{name} is missing (model.{family} = {name!r}); "
            f"entries: {', '.join(sorted(table))}"
        )
    return {**runtime_arguments(config, family, num_modalities), **table[name].to_dict()}


def runtime_arguments(config: ml_collections.ConfigDict, family: str, num_modalities: int) -> dict[str, Any]:
    """What a ``family`` model takes from the data and the task rather than from its sizes.

    Arguments:
        config: a config from ``configs/``.
        family: ``fusion``, ``segmentation`` or ``discriminator``.
        num_modalities: N, the channels of the input images.

    Returns:
        ``fuse4seg_jax.models.RUNTIME_ARGUMENTS[family]`` with their values: N for a leader; the
        follower's input channels (1, or N on stacked modalities) and ``model.num_classes``.
    """
    return {
        "fusion": {"num_modalities": num_modalities},
        "segmentation": {
            "in_channels": num_modalities if config.eval_input == "stacked" else 1,
            "num_classes": config.model.num_classes,
        },
        "discriminator": {},
    }[family]
