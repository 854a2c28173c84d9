"""The one exception type for mistakes a user can fix."""


class MtlnetError(Exception):
    """A problem with the user's input, parameters or files.

    The CLI prints its message as one line and exits non-zero; the message
    names the file, the column or key, and what is wrong.
    """


def one_line(error: BaseException, limit: int | None = None) -> str:
    """``error``'s message on one line, cut to ``limit`` characters."""
    text = " ".join(str(error).split())
    return text if limit is None else text[:limit]
