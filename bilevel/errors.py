"""The one error a user of :mod:`bilevel` can cause by configuration."""


class SolverConfigError(ValueError):
    """An unknown solver name, an unknown option or an invalid option value.

    The message lists the valid names or options, so a config file can be fixed from it alone.
    """
