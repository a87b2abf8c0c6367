"""The one exception type for errors a user can cause.

Every command-line tool catches `RnnaccelError`, prints its message on one line and exits
with status 2; anything else is a bug and is allowed to crash loudly.
"""


class RnnaccelError(Exception):
    """A problem with the user's input: model, program, listing, data or target."""
