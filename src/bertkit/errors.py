"""One exception hierarchy for bertkit.

Every error a user can cause (bad arguments, unreadable files, a missing model) is a
:class:`BertkitError`. The CLI turns it into a single ``Error: ...`` line and exit code 1;
set ``BERTKIT_DEBUG=1`` to see the traceback instead.
"""


class BertkitError(Exception):
    """Base class for errors caused by input bertkit can explain to the user."""


class InputError(BertkitError, ValueError):
    """A bad argument, text, file, column or label."""


class ModelLoadError(BertkitError, OSError):
    """A model could not be found, fetched or read."""


class DataError(InputError):
    """A data file is missing, unreadable, or lacks the columns asked for."""
