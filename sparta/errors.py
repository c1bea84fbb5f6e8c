"""The base of every error that is the user's to fix (config, data, files, runs, devices).

The CLI prints such an error as one line and exits 2; any other exception is a bug in SPARTA and
keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (config, data, paths, runs, devices) whose message says how to fix it."""
