"""The one decoder of error answers: status + body + Retry-After -> the exception tree."""

from __future__ import annotations

import email.utils
import time

import pytest

from loader.errors import (
    MAX_RETRY_AFTER,
    AlreadyExistsError,
    InsufficientScopeError,
    InvalidRequestError,
    InvalidSecretNameError,
    LoaderError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    PreconditionFailedError,
    RateLimitedError,
    ServiceUnavailableError,
    UnauthorizedError,
    UnrenderableError,
    error_from_response,
    retry_after_seconds,
)

ERROR = b'{"error": "the message", "code": "some_code"}'


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (400, ERROR, InvalidRequestError),
        (400, b'{"error": "bad name", "code": "invalid_secret_name"}', InvalidSecretNameError),
        (401, ERROR, UnauthorizedError),
        (403, ERROR, InsufficientScopeError),
        (404, ERROR, NotFoundError),
        (405, ERROR, MethodNotAllowedError),
        (409, ERROR, AlreadyExistsError),
        (412, ERROR, PreconditionFailedError),
        (413, ERROR, PayloadTooLargeError),
        (418, ERROR, InvalidRequestError),  # an unknown 4xx is a bad request
        (422, ERROR, UnrenderableError),
        (429, ERROR, RateLimitedError),
        (500, ERROR, ServiceUnavailableError),
        (502, b"<html>bad gateway</html>", ServiceUnavailableError),
        (503, ERROR, ServiceUnavailableError),
    ],
)
def test_status_picks_the_exception(status: int, body: bytes, cls: type[LoaderError]) -> None:
    exc = error_from_response(status, body)
    assert type(exc) is cls


@pytest.mark.parametrize(
    ("body", "where", "message"),
    [
        (ERROR, None, "the message"),
        (ERROR, "store", "store: the message"),
        (ERROR, "agent", "agent: the message"),
        (b"", None, "HTTP 404"),
        (b"", "store", "store answered HTTP 404"),
        (b"not json", "agent", "agent answered HTTP 404"),
        (b"\xff\xfe", None, "HTTP 404"),  # not UTF-8
        (b'["a list"]', None, "HTTP 404"),
        (b'{"code": "not_found"}', "store", "store answered HTTP 404"),  # no error text
        (b'{"error": "", "code": "not_found"}', None, "HTTP 404"),  # empty error text
        (b'{"error": {"nested": 1}}', None, "HTTP 404"),  # not a string
    ],
)
def test_message_comes_from_the_body_or_the_status(
    body: bytes, where: str | None, message: str
) -> None:
    assert error_from_response(404, body, None, where).message == message


def test_a_code_that_is_not_a_string_is_ignored() -> None:
    exc = error_from_response(400, b'{"error": "x", "code": ["invalid_secret_name"]}')
    assert type(exc) is InvalidRequestError


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("7", 7.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("1e400", None),  # overflows to inf
        ("soon", None),
        ("", None),
        ("99999999", MAX_RETRY_AFTER),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: now
        ("Wed, 99 Foo 2015 07:28:00 GMT", None),
    ],
)
def test_retry_after_is_guarded(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds


def test_retry_after_as_a_future_http_date() -> None:
    header = email.utils.formatdate(time.time() + 120, usegmt=True)
    seconds = retry_after_seconds(header)
    assert seconds is not None
    assert 100 < seconds <= 120


@pytest.mark.parametrize(
    ("status", "header", "retry_after"),
    [
        (429, "3", 3.0),
        (429, None, 1.0),  # a 429 without a usable header waits a second
        (429, "garbage", 1.0),
        (503, "2", 2.0),
        (503, None, None),
        (500, "nan", None),
    ],
)
def test_retry_after_reaches_the_exception(
    status: int, header: str | None, retry_after: float | None
) -> None:
    exc = error_from_response(status, ERROR, header)
    assert isinstance(exc, RateLimitedError | ServiceUnavailableError)
    assert exc.retry_after == retry_after
