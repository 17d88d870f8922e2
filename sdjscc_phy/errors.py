"""One exception hierarchy for every error a user can cause.

The CLI prints ``str(error)`` as one line and exits with code 2; anything else is a bug.
"""


class JsccflowError(Exception):
    """Base class of every user-facing error."""


class FlowgraphError(JsccflowError):
    """A flowgraph file is malformed or inconsistent; ``errors`` holds every problem found."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class YamlFileError(FlowgraphError):
    """A YAML file (flowgraph, recipe, sweep file) or a ``--set`` value cannot be read: unreadable, too
    large, not UTF-8, control characters, too deep, too many aliases, bad syntax, unsupported tags."""


class ParameterError(JsccflowError):
    """A block or recipe parameter is unknown, mistyped or out of range."""


class PortError(JsccflowError):
    """A port is unknown, unconnected, or carries the wrong dtype/shape."""


class RegistryError(JsccflowError):
    """A block type is unknown or registered twice."""


class DataError(JsccflowError):
    """A dataset, split file or image cannot be read."""


class CheckpointError(JsccflowError):
    """A checkpoint is missing, corrupt, or does not match the model it is loaded into."""


class RecipeError(JsccflowError):
    """A training recipe is malformed; ``errors`` holds every problem found, one line each."""

    def __init__(self, message: str | list[str]):
        self.errors = [message] if isinstance(message, str) else list(message)
        super().__init__("\n".join(self.errors))


class TrainingError(JsccflowError):
    """Training cannot continue (e.g. the loss became NaN or inf)."""


class MissingExtraError(JsccflowError):
    """An optional dependency is not installed; the message names the pip extra that provides it."""


class NothingToPairError(JsccflowError):
    """``table --paired`` with one noise seed and no per-item rows (they are not committed)."""
