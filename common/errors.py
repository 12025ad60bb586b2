"""The one error type a user is meant to read."""


class PipelineError(Exception):
    """An error the user can act on; runners print it without a traceback."""
