"""The one exception type for errors a user can cause.

Every command-line tool catches `RnnaccelError`, prints its message on one line and exits
with status 2; anything else is a bug and is allowed to crash loudly.
"""


class RnnaccelError(Exception):
    """A problem with the user's input: model, program, listing, data or target."""


QUOTE_LIMIT = 40


def shortened(text: object, limit: int = QUOTE_LIMIT) -> str:
    """`text` cut to `limit` characters for a message: a name or literal from a hostile file may
    be megabytes long, and a message must stay one readable line."""
    text = str(text)
    return f"{text[:limit]}..." if len(text) > limit else text


def quoted(text: object, limit: int = QUOTE_LIMIT) -> str:
    """`text` shortened and in single quotes."""
    return f"'{shortened(text, limit)}'"
