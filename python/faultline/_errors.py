"""Exceptions raised by faultline. Messages are the library's one-line messages, the text the
``faultline`` CLI prints after ``error:``."""


class Error(Exception):
    """Base class of every error faultline raises (a run directory holding another run, an
    unreadable file, an engine failure)."""


class InvalidInput(Error, ValueError):
    """Bad input: a setting out of range, images or labels that do not fit the model, an
    unknown attack or corruption name, a malformed model or data file."""


class FileNotFound(Error, FileNotFoundError):
    """A model, data set or other file that does not exist."""
