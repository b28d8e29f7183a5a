"""One exception tree for Luzia; the CLI maps each class to an exit code."""


class LuziaError(Exception):
    """Root of every error Luzia raises on purpose."""

    exit_code = 1


class ConfigError(LuziaError):
    """The configuration (file, env var or flag) is invalid."""

    exit_code = 2


class UsageError(LuziaError):
    """The user asked for something that cannot be done as asked (unknown project, bad option)."""

    exit_code = 2


class NotFound(LuziaError):
    """A job, agent or other named thing does not exist."""

    exit_code = 2


class ProtocolError(LuziaError):
    """A frame or message body is malformed, oversized or of an unknown type."""

    exit_code = 4


class BrokerUnreachable(LuziaError):
    """The broker did not answer in time."""

    exit_code = 3


class IllegalTransition(LuziaError):
    """A job or process state change that the state machine does not allow: a bug."""

    exit_code = 70


class StateDirError(LuziaError):
    """The state directory cannot be created or written."""

    exit_code = 73


class Rejected(LuziaError):
    """The broker rejected a submission (queue full, unknown dependency); the job is kept."""

    exit_code = 75
