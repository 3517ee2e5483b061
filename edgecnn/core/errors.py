"""The one exception type for user errors.

Anything a user can fix (a bad file, a bad option) is raised as `EdgecnnError` with *what* is wrong and
*where* (the file or option). The CLI renders it as one line, ``error: <what> (<where>)``, and exits 2.
"""

from __future__ import annotations


class EdgecnnError(Exception):
    """A problem with the user's input, stated as what is wrong and where."""

    exit_code = 2

    def __init__(self, what: str, where: object = None) -> None:
        self.what = what
        self.where = "" if where is None else str(where)
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.what} ({self.where})" if self.where else self.what


def first_line(exc: BaseException) -> str:
    """A library's exception, cut to its first line: enough to say what broke in a one-line error."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
