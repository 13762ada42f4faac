"""Errors meant for the person at the keyboard.

Every `UserError` renders as one line that names the problem and what to do about it;
the CLI prints it and exits non-zero, the TUI shows it as a notification.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; `str(err)` is the one-line message."""

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} — {fix}" if fix else problem)


class DatabaseError(UserError):
    exit_code = 3


class AudioDecodeError(Exception):
    """A file could not be decoded; the message is the reason stored with the track."""
