"""The HTTP/1.1 response parser of both clients (loader.httpwire; loader run's GET reads whole
answers through loader.runner.http.parse_response) as tables: framing, chunked bodies, and
every garbled or truncated answer refused."""

from __future__ import annotations

import io

import pytest

from loader.httpwire import MAX_BODY, MAX_HEAD, Closed, read_response
from loader.runner.http import parse_response

OK = b"HTTP/1.1 200 OK\r\n"


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    return OK + b"Transfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n" + trailer + b"\r\n"


@pytest.mark.parametrize(
    ("raw", "method", "status", "body", "keep"),
    [
        (OK + b"Content-Length: 5\r\n\r\nhello", "GET", 200, b"hello", True),
        (OK + b"Content-Length: 0\r\n\r\n", "GET", 200, b"", True),
        (OK + b"content-length: 2\r\nConnection: close\r\n\r\nhi", "GET", 200, b"hi", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi", "GET", 200, b"hi", False),
        (OK + b"\r\nuntil the end", "GET", 200, b"until the end", False),  # close-delimited
        (OK + b"Content-Length: 3\r\n\r\nabcEXTRA", "GET", 200, b"abc", True),  # next answer's
        (b"HTTP/1.1 204 No Content\r\n\r\n", "GET", 204, b"", True),
        (b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", "GET", 304, b"", True),
        (OK + b"Content-Length: 5\r\n\r\n", "HEAD", 200, b"", True),
        (b"HTTP/1.1 404 Not Found\n\n{}", "GET", 404, b"{}", False),  # bare LF line ends
        # chunked: one chunk, several, a chunk extension, upper-case hex, trailers
        (chunked(b"hello"), "GET", 200, b"hello", True),
        (chunked(b"a" * 10, b"b" * 300, b"c"), "GET", 200, b"a" * 10 + b"b" * 300 + b"c", True),
        (OK + b"Transfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n0\r\n\r\n", "GET",
         200, b"hello", True),
        (OK + b"Transfer-Encoding: chunked\r\n\r\n1A\r\n" + b"z" * 26 + b"\r\n0\r\n\r\n", "GET",
         200, b"z" * 26, True),
        (chunked(b"x", trailer=b"X-Checksum: 1\r\nX-More: 2\r\n"), "GET", 200, b"x", True),
        (chunked(), "GET", 200, b"", True),  # no chunk at all
        (chunked(b"line\r\nbreaks\r\n"), "GET", 200, b"line\r\nbreaks\r\n", True),
    ],
)  # fmt: skip
def test_read_response(raw: bytes, method: str, status: int, body: bytes, keep: bool) -> None:
    response, reusable = read_response(io.BytesIO(raw), method)
    assert (response.status, response.body, reusable) == (status, body, keep)


def test_headers_are_lower_case_and_trimmed() -> None:
    raw = OK + b'ETag:  "r1.2" \r\nX-Loader-Revision: 7\r\nContent-Length: 0\r\n\r\n'
    response, _ = read_response(io.BytesIO(raw))
    assert response.headers == {"etag": '"r1.2"', "x-loader-revision": "7", "content-length": "0"}


def test_two_answers_on_one_kept_connection() -> None:
    stream = io.BytesIO(OK + b"Content-Length: 1\r\n\r\na" + chunked(b"bc"))
    assert read_response(stream)[0].body == b"a"
    assert read_response(stream)[0].body == b"bc"
    with pytest.raises(Closed):  # the server closed it: the client tries a new connection
        read_response(stream)


@pytest.mark.parametrize(
    ("raw", "fault"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP response"),
        (b"HTTP/1.1 OK\r\n\r\n", "not an HTTP response"),
        (OK + b"Content-Length: 5\r\n", "truncated or oversized HTTP headers"),
        (OK + b"X: " + b"y" * MAX_HEAD + b"\r\n\r\n", "truncated or oversized HTTP headers"),
        (OK + b"Content-Length: 10\r\n\r\nshort", "truncated HTTP body"),
        (OK + b"Content-Length: -1\r\n\r\n", "bad Content-Length"),
        (OK + b"Content-Length: 1e3\r\n\r\n", "bad Content-Length"),
        (OK + b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1), "bad Content-Length"),
        (OK + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhel", "truncated chunked body"),
        (OK + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello", "truncated chunked body"),
        (OK + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", "truncated chunked"),
        (OK + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", "truncated chunked body"),
        (OK + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (OK + b"Transfer-Encoding: chunked\r\n\r\n-5\r\n", "bad chunk size"),
        (OK + b"Transfer-Encoding: chunked\r\n\r\n\r\n", "bad chunk size"),
        (OK + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % (MAX_BODY + 1), "HTTP body too large"),
    ],
)
def test_garbled_and_truncated_answers_are_refused(raw: bytes, fault: str) -> None:
    with pytest.raises(ValueError, match=fault):
        read_response(io.BytesIO(raw))


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (OK + b"Content-Length: 12\r\n\r\nexport A='1'", b"export A='1'"),
        (chunked(b"export A=", b"'1'\n"), b"export A='1'\n"),
        (OK + b"Connection: close\r\n\r\nall of it", b"all of it"),
    ],
)
def test_loader_run_reads_whole_answers_with_the_same_parser(raw: bytes, body: bytes) -> None:
    assert parse_response(raw).body == body


@pytest.mark.parametrize("raw", [b"", OK, OK + b"Transfer-Encoding: chunked\r\n\r\n3\r\nab"])
def test_loader_run_refuses_an_empty_or_cut_answer(raw: bytes) -> None:
    with pytest.raises(ValueError):
        parse_response(raw)
