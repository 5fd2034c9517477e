"""The failures a night reports in one line and stops on.

Each carries the file (and where there is one, the row and column) so that an operator
knows what to fix without reading a traceback.
"""

from __future__ import annotations


class LienwatchError(Exception):
    """A night (or command) could not complete; the message is the one-line reason."""


class FeedError(LienwatchError):
    """A landing file that cannot be taken in at all: nothing is loaded from it."""

    def __init__(self, source_file: str, problem: str) -> None:
        self.source_file = source_file
        self.problem = problem
        super().__init__(f"{source_file}: {problem}")


class WarehouseBusy(LienwatchError):
    """Another night holds the warehouse."""


def one_line(exc: BaseException) -> str:
    """The first line of a failure's message (its type's name when it has none): the reason
    a failed night records and the command prints."""
    text = str(exc)
    return text.splitlines()[0] if text.strip() else type(exc).__name__
