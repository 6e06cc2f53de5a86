"""Exceptions raised by monoquant.

Every error from the C++ core arrives as one of these. Each also derives
from the built-in exception a Python user would expect to catch, so
``except ValueError`` keeps working for a bad argument.
"""


class MonoquantError(Exception):
    """Base class of every monoquant error."""


class InvalidArgumentError(MonoquantError, ValueError):
    """An argument cannot work: a bad shape, flag or value (NaN weights included)."""


class FormatError(MonoquantError, ValueError):
    """A file or buffer is malformed."""


class MonoquantIOError(MonoquantError, OSError):
    """The operating system refused a read, write or rename."""


class UnsupportedError(MonoquantError, NotImplementedError):
    """Well-formed, but not something monoquant does."""


__all__ = [
    "MonoquantError",
    "InvalidArgumentError",
    "FormatError",
    "MonoquantIOError",
    "UnsupportedError",
]
