"""Exceptions raised by rlsurgery. All derive from :class:`SurgeryError`, a ``ValueError``."""

from __future__ import annotations


class SurgeryError(ValueError):
    """Base class: a surgery, its parameters, a recipe or a combination is invalid."""


class UnknownSurgeryError(SurgeryError, KeyError):
    """A key that is not in the catalog."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class PlannedSurgeryError(SurgeryError):
    """A catalog key whose surgery is planned but not implemented yet."""


class ParameterError(SurgeryError):
    """A surgery parameter is missing, unknown, of the wrong type or out of range."""


class IncompatibleSurgeryError(SurgeryError):
    """A surgery does not fit the agent, or two surgeries conflict."""


class AgentBuildError(IncompatibleSurgeryError, AssertionError):
    """SB3 refused to build the agent (an unsupported space, ``n_steps=1``, ...): an
    ``AssertionError`` as SB3 raises it, so code written for SB3 catches it the same way, and a
    :class:`SurgeryError` the command line reports in one line."""


class RecipeError(SurgeryError):
    """A recipe or spec file is malformed."""


class EnvironmentNotAvailableError(SurgeryError):
    """An environment id that is unknown, or needs an extra that is not installed."""


class StudyError(SurgeryError):
    """A study, suite or study folder is invalid."""


class UntrustedModelError(SurgeryError):
    """A model zip that could run code when loaded, refused because the user did not opt in."""


class ModelFileError(SurgeryError):
    """A model zip that is not one, or whose contents are damaged or inconsistent."""


class SettingError(SurgeryError):
    """A setting of a run or study (steps, seed, episodes, workers, ...) is of the wrong type or out
    of range."""
