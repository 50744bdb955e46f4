"""The one exception tree.

Every error loader raises on purpose is a :class:`LoaderError`. Each class knows the HTTP status
and error code the store answers with, and the process exit code the CLI leaves with, so the
mapping lives here and nowhere else: the server's route wrapper, the HTTP clients
(:func:`error_from_response`, their one decoder of error answers) and ``cli.main`` all read
these attributes.

Messages never contain a secret value or a token: they name secrets, never show them.

Stdlib only: ``loader run`` imports this on its exec path.
"""

from __future__ import annotations

# sysexits.h
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78

# The exit-code table, the same for every command (the README's table is checked against it).
# ``loader run`` also leaves with its command's own code, 126 (not executable) and 127 (not
# found), like a shell.
EXIT_CODES: tuple[tuple[int, str, str], ...] = (
    (0, "ok", "done"),
    (EX_USAGE, "usage", "a bad command line: unknown command or flag, missing or bad argument"),
    (
        EX_DATAERR,
        "bad input data",
        "a file or stdin that cannot be used (not UTF-8, bad lines, an empty value), or a "
        "value a format or template cannot carry",
    ),
    (
        EX_NOINPUT,
        "not found",
        "an app, environment, secret, version, token or input file that does not exist",
    ),
    (
        EX_UNAVAILABLE,
        "unreachable",
        "the store or agent cannot be reached or answered 5xx; an address already in use",
    ),
    (EX_CANTCREAT, "exists", "the app or environment already exists"),
    (EX_TEMPFAIL, "temporary", "rate limited or a precondition failed: try again"),
    (EX_NOPERM, "refused", "the token is unknown, expired, revoked or lacks the scope/binding"),
    (
        EX_CONFIG,
        "configuration",
        "a bad setting (LOADER_* or a flag): bad URL, missing token, unreadable key or token "
        "file, a master key that does not match the data",
    ),
)


class LoaderError(Exception):
    """Base of every deliberate loader error."""

    status: int = 500
    code: str = "internal_error"
    exit_code: int = EX_SOFTWARE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict[str, object]:
        return {"error": self.message, "code": self.code}


class InvalidRequestError(LoaderError): ...


class InvalidSecretNameError(InvalidRequestError): ...


class UnauthorizedError(LoaderError): ...


class InsufficientScopeError(LoaderError): ...


class NotFoundError(LoaderError): ...


class MethodNotAllowedError(LoaderError): ...


class AlreadyExistsError(LoaderError): ...


class ConflictError(LoaderError):
    """The request conflicts with the resource's state (e.g. deleting ``default``)."""


class PreconditionFailedError(LoaderError): ...


class PayloadTooLargeError(LoaderError): ...


class UnrenderableError(LoaderError):
    """A value that a format or template cannot carry exactly. Names the secret, never the value."""

    def __init__(self, message: str, name: str | None = None, names: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.name = name
        self.names = names or ((name,) if name else ())


class RateLimitedError(LoaderError):
    def __init__(
        self, message: str, retry_after: float, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        return {**super().body(), "retry_after": retry_seconds(self.retry_after)}


class InternalError(LoaderError): ...


class DecryptionError(InternalError):
    """A ciphertext failed to authenticate. Names the key id, never data."""


class ServiceUnavailableError(LoaderError):
    """The store (or an agent) could not be reached, or answered 5xx."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def body(self) -> dict[str, object]:
        if self.retry_after is None:
            return super().body()
        return {**super().body(), "retry_after": retry_seconds(self.retry_after)}


DATABASE_CODES = (
    "database_unavailable",
    "database_timeout",
    "database_busy",
    "database_read_only",
    "database_corrupt",
    "disk_full",
    "database_file_missing",
    "database_file_replaced",
    "master_key_mismatch",
    "master_key_unreadable",
)


class DatabaseUnavailableError(ServiceUnavailableError):
    """The database is unreachable, timed out, full, read-only or not the file the store opened,
    or the master key does not open its data keys. ``code`` (one of :data:`DATABASE_CODES`)
    says which; the answer is 503 with ``Retry-After``."""

    def __init__(self, message: str, code: str | None = None, retry_after: float = 2.0) -> None:
        super().__init__(message, retry_after)
        if code is not None:
            self.code = code


class AuditUnavailableError(ServiceUnavailableError):
    """A reveal refused because its audit record cannot be written (the sink is failing)."""

    def __init__(self, message: str, retry_after: float = 2.0) -> None:
        super().__init__(message, retry_after)


def retry_seconds(seconds: float) -> int:
    """A ``Retry-After`` value: whole seconds, rounded up, at least 1."""
    return max(1, round(seconds + 0.4999))


class UnreachableError(ServiceUnavailableError):
    """No connection at all: refused, reset, no such socket. The other side is down or
    restarting, so followers retry it soon (see :mod:`loader.backoff`)."""


def nobody_listening(exc: BaseException) -> bool:
    """Refused, reset, aborted, broken pipe, no such socket file: nobody is listening right now.
    (Not a timeout, a DNS or TLS failure, or an unroutable host: those are retried at the normal
    pace.)"""
    import errno  # not at import time: the exec path never needs it

    return getattr(exc, "errno", None) in {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ENOENT,
    }


class ConfigError(LoaderError):
    """A bad setting, found at start before any network call."""


class UsageError(LoaderError):
    """A bad command line."""


class DataError(LoaderError):
    """Input data (a file, stdin) that cannot be used. Names the line, never the value."""


class AddressInUseError(LoaderError):
    """A listen address another process holds: one line naming the address, exit 69."""


CREDENTIAL_PREFIXES = ("lt_", "lc_", "eyJ")  # loader tokens, OAuth client ids, JWTs


def shown(argument: object) -> str:
    """An argument as a message may show it: one that looks like a token or a client secret
    (typed where a path or a name goes) is not shown."""
    text = str(argument)
    if text.startswith(CREDENTIAL_PREFIXES) or "/lt_" in text or len(text) > 200:
        return "(not shown: it looks like a credential)"
    return text


def tls_failure(where: str, reason: str) -> ServiceUnavailableError:
    """A failed TLS handshake as one clear line (OpenSSL's reason names alone are cryptic)."""
    upper = reason.upper()
    if (
        "WRONG_VERSION_NUMBER" in upper
        or "PACKET_LENGTH_TOO_LONG" in upper
        or ("RECORD LAYER FAILURE" in upper)
    ):
        return ServiceUnavailableError(
            f"{where} does not speak TLS (it answered in plain HTTP): use an http:// URL, "
            "or serve the store with --tls-cert/--tls-key"
        )
    if "CERTIFICATE_VERIFY_FAILED" in upper:
        return ServiceUnavailableError(
            f"TLS handshake with {where} failed: its certificate is not trusted (set "
            "LOADER_CA_FILE to the CA bundle that signed it)"
        )
    return ServiceUnavailableError(f"TLS handshake with {where} failed: {reason}")


class CommandNotFoundError(LoaderError): ...


class CommandNotExecutableError(LoaderError): ...


# The one table: each error's HTTP status and error code (what the store answers) and exit code
# (what the CLI leaves with). A subclass not listed has its parent's.
_TABLE: dict[type[LoaderError], tuple[int, str, int]] = {
    InvalidRequestError: (400, "invalid_request", EX_USAGE),
    InvalidSecretNameError: (400, "invalid_secret_name", EX_USAGE),
    UnauthorizedError: (401, "unauthorized", EX_NOPERM),
    InsufficientScopeError: (403, "insufficient_scope", EX_NOPERM),
    NotFoundError: (404, "not_found", EX_NOINPUT),
    MethodNotAllowedError: (405, "invalid_request", EX_USAGE),
    AlreadyExistsError: (409, "already_exists", EX_CANTCREAT),
    ConflictError: (409, "invalid_request", EX_USAGE),
    PreconditionFailedError: (412, "precondition_failed", EX_TEMPFAIL),
    PayloadTooLargeError: (413, "payload_too_large", EX_USAGE),
    UnrenderableError: (422, "invalid_request", EX_DATAERR),
    DataError: (422, "invalid_request", EX_DATAERR),
    RateLimitedError: (429, "rate_limited", EX_TEMPFAIL),
    InternalError: (500, "internal_error", EX_SOFTWARE),
    ServiceUnavailableError: (503, "unavailable", EX_UNAVAILABLE),
    DatabaseUnavailableError: (503, "database_unavailable", EX_UNAVAILABLE),
    AuditUnavailableError: (503, "audit_unavailable", EX_UNAVAILABLE),
    # Never answered over HTTP: only their exit codes matter.
    ConfigError: (500, "internal_error", EX_CONFIG),
    UsageError: (500, "internal_error", EX_USAGE),
    AddressInUseError: (500, "internal_error", EX_UNAVAILABLE),
    CommandNotFoundError: (500, "internal_error", 127),
    CommandNotExecutableError: (500, "internal_error", 126),
}
for _cls, (_status, _code, _exit_code) in _TABLE.items():
    _cls.status, _cls.code, _cls.exit_code = _status, _code, _exit_code

# The exception a client raises for an error answer, by status.
_BY_STATUS: dict[int, type[LoaderError]] = {
    400: InvalidRequestError,
    401: UnauthorizedError,
    403: InsufficientScopeError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    409: AlreadyExistsError,
    412: PreconditionFailedError,
    413: PayloadTooLargeError,
    422: UnrenderableError,
}


# A Retry-After longer than this is taken as this: a follower never sleeps for a day because a
# proxy said so.
MAX_RETRY_AFTER = 3600.0


def retry_after_seconds(header: str | None) -> float | None:
    """A ``Retry-After`` header as seconds: delay-seconds (a decimal fraction too) or an
    HTTP-date; None when absent or unreadable (negative, not finite, garbled). Capped at
    :data:`MAX_RETRY_AFTER`."""
    if header is None:
        return None
    text = header.strip()
    seconds: float | None
    try:
        seconds = float(text)
    except ValueError:
        seconds = _seconds_until(text)
    if seconds is None or not 0 <= seconds < float("inf"):  # (also false for NaN)
        return None
    return min(seconds, MAX_RETRY_AFTER)


def _seconds_until(http_date: str) -> float | None:
    import time  # only for the rare HTTP-date form (the exec path never needs it)
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, parsedate_to_datetime(http_date).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def error_from_response(
    status: int, body: bytes, retry_after: str | None = None, where: str | None = None
) -> LoaderError:
    """Decode an HTTP error answer of the store or an agent -- status, JSON body
    (``{"error": ..., "code": ...}``) and ``Retry-After`` header -- into the exception it stands
    for (hvac's ``raise_for_error``): the one decoder of every client. ``where`` ("store",
    "agent") starts the message; a body that is not the JSON error shape leaves the status."""
    import json  # not at import time: the exec path decodes only when an answer is an error

    message: str | None = None
    code: str | None = None
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict):
        if isinstance(data.get("error"), str) and data["error"]:
            message = data["error"]
        if isinstance(data.get("code"), str):
            code = data["code"]
    if message is None:
        message = f"{where} answered HTTP {status}" if where else f"HTTP {status}"
    elif where:
        message = f"{where}: {message}"
    seconds = retry_after_seconds(retry_after)
    if status == 429:
        return RateLimitedError(message, seconds if seconds is not None else 1.0)
    if status >= 500:
        return ServiceUnavailableError(message, seconds)
    if code == "invalid_secret_name":
        return InvalidSecretNameError(message)
    return _BY_STATUS.get(status, InvalidRequestError)(message)
