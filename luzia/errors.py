"""One exception tree for Luzia. The CLI maps each class to an exit code; a control reply
carries the class's wire `code`, which `error_for_code` turns back into the class."""

from __future__ import annotations


class LuziaError(Exception):
    """Root of every error Luzia raises on purpose."""

    exit_code = 1
    code = "internal"         # its name in a control Reply's `code` field


class ConfigError(LuziaError):
    """The configuration (file, env var or flag) is invalid."""

    exit_code = 2


class UsageError(LuziaError):
    """The user asked for something that cannot be done as asked (unknown project, bad option)."""

    exit_code = 2
    code = "bad_request"


class BadRequest(UsageError):
    """A control request that cannot be done as asked (unknown op, wrong argument)."""


class Ambiguous(UsageError):
    """An id prefix names more than one job."""

    code = "ambiguous"


class Forbidden(UsageError):
    """The submitter may not do this (name another user with --user without being an admin)."""

    code = "forbidden"


class NotFound(LuziaError):
    """A job, agent or other named thing does not exist."""

    exit_code = 2
    code = "not_found"


class Unavailable(LuziaError):
    """What would answer is not there now (an agent that went away mid-request)."""

    code = "unavailable"


class Refused(LuziaError):
    """A command that is understood but refused in the present state (forgetting an agent
    that still holds jobs)."""

    code = "refused"


class ProtocolError(LuziaError):
    """A frame or message body is malformed, oversized or of an unknown type."""

    exit_code = 4


class Outdated(LuziaError):
    """The broker does not serve this peer's protocol version: upgrade the peer."""

    exit_code = 4
    code = "outdated"


class BrokerUnreachable(LuziaError):
    """The broker did not answer in time."""

    exit_code = 3


class WaitTimeout(LuziaError, TimeoutError):
    """Waiting for a job took longer than allowed (luzia.client.wait's timeout)."""


class IllegalTransition(LuziaError):
    """A job or process state change that the state machine does not allow: a bug."""

    exit_code = 70


class StateDirError(LuziaError):
    """The state directory cannot be created or written."""

    exit_code = 73


class StoreError(StateDirError):
    """The job database cannot be used: damaged, from a newer release, or a query failed."""

    code = "database"


class InUse(LuziaError):
    """Another process holds what this one needs (`luzia db recover` while the broker runs)."""

    exit_code = 75
    holder = "?"              # who holds it, as it wrote itself into the lock (its pid)


class Rejected(LuziaError):
    """The broker rejected a submission (queue full, unknown dependency); the job is kept."""

    exit_code = 75


_BY_CODE: dict[str, type[LuziaError]] = {
    cls.code: cls for cls in (LuziaError, UsageError, Ambiguous, NotFound, Unavailable,
                               StoreError, Refused, Forbidden, Outdated)}


def error_for_code(code: str, message: str) -> LuziaError:
    """The error a control reply's `code` names (an unknown code: LuziaError)."""
    return _BY_CODE.get(code, LuziaError)(message)
