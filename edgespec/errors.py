"""Typed errors. Every message names the bad value and what was expected.

The CLI prints `error: <message>` for any EdgespecError and exits non-zero,
without a traceback; anything else is a bug and keeps its traceback.
"""


class EdgespecError(Exception):
    """Base class of the errors a user can cause and fix."""

    exit_code = 1


class ModelFormatError(EdgespecError):
    """A weights file is not what it claims to be: not GGUF, truncated, corrupt."""


class UnsupportedArchitectureError(EdgespecError):
    """The model's architecture has no implementation here."""


class UnsupportedQuantError(EdgespecError):
    """A tensor uses a quantization type we cannot read."""


class ChecksumError(EdgespecError):
    """A file's sha256 differs from the pinned one."""


class UnknownModelError(EdgespecError):
    """A model name is neither a known model nor an existing path."""


class PullError(EdgespecError):
    """Fetching a known model from its packages failed."""


class TokenizerError(EdgespecError):
    """The tokenizer cannot be built or does not match the model."""


class ContextOverflowError(EdgespecError):
    """The input does not fit in the model's context."""


class MissingDependencyError(EdgespecError):
    """An optional dependency (an extra) is needed but not installed."""
