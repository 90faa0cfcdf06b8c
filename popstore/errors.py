"""Errors a user can cause and fix: bad input, a wrong store, a typo in a pipeline file.

The command line prints a :class:`UserError` as one line naming what is wrong and
exits with status 2 (``popstore --debug`` shows the traceback); any other exception
is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input that the user can correct; its message says what is wrong, in one line."""
