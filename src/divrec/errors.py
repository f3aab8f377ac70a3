"""The base class of errors a user can fix from the config or the command line (bad data, impossible model)."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input: the message is one line saying what is wrong, where, and how to fix it.

    ``divrec`` prints it as ``error: <message>`` and exits with status 2, without a traceback.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
