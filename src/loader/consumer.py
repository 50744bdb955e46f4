"""What a consumer of the store (an agent, a ``loader run --watch`` runner, ``render --once``)
says about itself on the requests it makes anyway: one ``X-Loader-Consumer`` header.

``id=3f9c01ab2e44;kind=runner;host=web-7d9f;version=0.1.0;rendered=12;running=11;health=starting;seq=5``

* ``id``: stable for the life of the process (random unless given); ``kind``: agent, runner or
  render; ``host``: the pod or host name; ``version``: loader's.
* ``rendered``: the revision the consumer holds (an agent: the one it rendered; a runner: the one
  it fetched); ``running``: for a supervisor, the revision its running child started with;
  ``health``: the child's -- ``starting`` (not yet ready), ``healthy``, ``failed`` (it did not
  become ready: the runner went back to the previous revision) or ``waiting`` (a newer revision
  is held back by the restart budget).
* ``seq`` grows with every change of the report, so a late request never overwrites a newer
  report.

The store records the header as it arrives (:mod:`loader.store.fleet`); a long-poll carries it
at no extra cost. Stdlib only, nothing imported at module level beyond it (the runner).
"""

from __future__ import annotations

HEADER = "X-Loader-Consumer"
KINDS = ("agent", "runner", "render")
HEALTH = ("starting", "healthy", "failed", "waiting")
MAX_HEADER = 512
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-")
_LIMITS = {"id": 64, "host": 253, "version": 32}
_INTS = ("rendered", "running", "failed", "seq")
_WORD = "[A-Za-z0-9._:-]"
# The header as :meth:`Report.header` writes it (fields in this order), for the API document.
PATTERN = (
    f"^id={_WORD}{{1,64}};kind=(agent|runner|render)(;host={_WORD}{{0,253}})?"
    f"(;version={_WORD}{{0,32}})?(;rendered=[0-9]{{1,18}})?(;running=[0-9]{{1,18}})?"
    f"(;health=(starting|healthy|failed|waiting))?(;failed=[0-9]{{1,18}})?(;seq=[0-9]{{1,18}})?$"
)


class ReportError(ValueError):
    """A header that does not parse (the message names the field, never its text)."""


class Report:
    """One consumer's report. Mutable: the process updates it and every request sends it."""

    __slots__ = ("failed", "health", "host", "id", "kind", "rendered", "running", "seq", "version")

    def __init__(
        self,
        id: str,  # noqa: A002 - the header's own word
        kind: str,
        host: str = "",
        version: str = "",
        rendered: int | None = None,
        running: int | None = None,
        health: str | None = None,
        failed: int | None = None,
        seq: int = 0,
    ) -> None:
        self.id, self.kind, self.host, self.version = id, kind, host, version
        self.rendered, self.running, self.health, self.failed = rendered, running, health, failed
        self.seq = seq

    def update(self, **fields: int | str | None) -> None:
        """Change fields and count the change (``seq``)."""
        for name, value in fields.items():
            setattr(self, name, value)
        self.seq += 1

    def header(self) -> str:
        parts = [f"id={self.id}", f"kind={self.kind}"]
        if self.host:
            parts.append(f"host={self.host}")
        if self.version:
            parts.append(f"version={self.version}")
        for name in ("rendered", "running", "health", "failed"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value}")
        parts.append(f"seq={self.seq}")
        return ";".join(parts)

    def __repr__(self) -> str:
        return f"Report({self.header()})"


def parse(text: str) -> Report:
    """A header's report; :class:`ReportError` for anything out of shape."""
    if len(text) > MAX_HEADER:
        raise ReportError(f"longer than {MAX_HEADER} characters")
    fields: dict[str, str] = {}
    for part in text.split(";"):
        name, eq, value = part.strip().partition("=")
        if not eq:
            raise ReportError("expected name=value pairs separated by ;")
        if name in fields:
            raise ReportError(f"{name} given twice")
        fields[name] = value.strip()
    unknown = sorted(set(fields) - {"id", "kind", "host", "version", "health", *_INTS})
    if unknown:
        raise ReportError(f"unknown field {unknown[0][:20]!r}")
    for name, limit in _LIMITS.items():
        value = fields.get(name, "")
        if len(value) > limit or not set(value) <= _ID_CHARS:
            raise ReportError(f"{name}: at most {limit} of A-Z a-z 0-9 . _ : -")
    if not fields.get("id"):
        raise ReportError("id is required")
    if fields.get("kind") not in KINDS:
        raise ReportError(f"kind must be one of {', '.join(KINDS)}")
    health = fields.get("health")
    if health is not None and health not in HEALTH:
        raise ReportError(f"health must be one of {', '.join(HEALTH)}")
    numbers: dict[str, int | None] = {}
    for name in _INTS:
        raw = fields.get(name)
        if raw is None:
            numbers[name] = None
        elif raw.isascii() and raw.isdigit() and len(raw) <= 18:
            numbers[name] = int(raw)
        else:
            raise ReportError(f"{name} must be a whole number")
    return Report(
        fields["id"],
        fields["kind"],
        fields.get("host", ""),
        fields.get("version", ""),
        numbers["rendered"],
        numbers["running"],
        health,
        numbers["failed"],
        numbers["seq"] or 0,
    )


def new_report(kind: str, consumer_id: str | None = None) -> Report:
    """This process's report: a random id unless one is given, the host name, the version."""
    import os

    from loader import __version__

    host = "".join(c if c in _ID_CHARS else "-" for c in os.uname().nodename)[:253]
    return Report(consumer_id or os.urandom(6).hex(), kind, host, __version__)
