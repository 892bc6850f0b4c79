"""User-facing errors: every message here is written for the person at the page or the command line.

Pages and CLIs catch ``UserError`` (and only it) and show its text; anything else is a bug, logged with its
traceback and shown as "internal error <id>".
"""


class UserError(Exception):
    """An error whose message is meant for the user (shown as is, HTML-escaped on a page)."""


class InputError(UserError, ValueError):
    """Bad input from the user: a file, a flag, a field."""


class ModelLoadError(UserError):
    """A model could not be loaded."""


class GenerationError(UserError):
    """Generation failed (out of memory, bad settings, the endpoint said no)."""


class UnsupportedError(GenerationError):
    """The engine's backend cannot do this (see its ``capabilities``)."""


class StorageError(UserError):
    """The ratings database could not read or write; nothing already saved is lost."""
