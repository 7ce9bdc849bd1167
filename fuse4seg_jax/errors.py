"""One exception family for everything a user can get wrong.

The command line catches :class:`Fuse4SegError`, prints its message (which names the offending
file or config key) and exits non-zero without a traceback. Anything else is a bug and keeps its
traceback.
"""


class Fuse4SegError(Exception):
    """Base class of every error caused by user input (data, config, command line)."""


class DataError(Fuse4SegError):
    """A data file or folder is missing, corrupt, inconsistent or holds unexpected values."""


class ConfigError(Fuse4SegError):
    """A config key, value, solver name or command-line option is unknown or invalid."""


class TrainingError(Fuse4SegError):
    """A run cannot go on (for example its loss became NaN); the message says how to resume."""
