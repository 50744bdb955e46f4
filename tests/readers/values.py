"""One table of hostile values, rendered in every format and read back by every real reader.

Each row: name -> (value, the formats that must refuse it). The matrix test checks the writer
refuses exactly those (so a writer that refused everything would fail) and that every reader
reads every other value back byte-exact. ``bash scripts/reader-matrix`` prints the README table.
"""

from __future__ import annotations

_PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAu1SU1LfVLPHCozMx\n"
    "H2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTK\n"
    "Eq5kTQIDAQABAkEA+/=\n"
    "-----END PRIVATE KEY-----\n"
)
_JSON = '{"user": "app", "password": "p@ss w0rd", "hosts": ["db-1", "db-2"], "port": 5432}'

DOTENV_FORMATS = frozenset({"dotenv", "dotenv-expand"})
DOTENV_AND_DOCKER = DOTENV_FORMATS | {"docker"}
EXPAND = frozenset({"dotenv-expand"})
DOCKER = frozenset({"docker"})
NONE: frozenset[str] = frozenset()

# name -> (value, formats that refuse it)
VALUES: dict[str, tuple[str, frozenset[str]]] = {
    "PLAIN": ("s3cr3t-Value_1.2/x+y=", NONE),
    "EMPTY": ("", NONE),
    "EDGE_SPACES": ("  padded  ", NONE),
    "SINGLE_QUOTE": ("it's", NONE),
    "DOUBLE_QUOTE": ('say "hi"', NONE),
    "BOTH_QUOTES": ("'a' \"b\"", DOTENV_FORMATS),
    "QUOTED_WHOLE": ("'quoted'", NONE),
    "BACKSLASH": ("C:\\temp\\new", NONE),
    "DOUBLE_BACKSLASH": ("a\\\\b", DOTENV_FORMATS),
    "TRAILING_BACKSLASH": ("ends\\", DOTENV_FORMATS),
    "BACKSLASH_N": ("not\\na newline", NONE),
    "BACKSLASH_QUOTE": ("it\\'s", DOTENV_FORMATS),
    "DOLLAR_VAR": ("$HOME/x", EXPAND),
    "DOLLAR_BRACE": ("${HOME}", DOTENV_FORMATS),
    "DOLLAR_BRACE_DEFAULT": ("${X:-fallback}", DOTENV_FORMATS),
    "DOLLAR_DOLLAR": ("pa$$word", EXPAND),
    "DOLLAR_END": ("cost$", EXPAND),
    "COMMAND_SUBST": ("$(echo pwned)", EXPAND),
    "BACKTICKS": ("`echo pwned`", NONE),
    "DOLLAR_AND_QUOTE": ("it's $5", DOTENV_FORMATS),
    "HASH_SPACED": ("a # not a comment", NONE),
    "HASH_TIGHT": ("a#b", NONE),
    "HASH_LEADING": ("#value", NONE),
    "EQUALS": ("a=b==c", NONE),
    "TAB": ("a\tb", NONE),
    "LF": ("line1\nline2", DOCKER),
    "TRAILING_LF": ("line\n", DOCKER),
    "CRLF": ("a\r\nb", DOTENV_AND_DOCKER),
    "CR": ("a\rb", DOTENV_AND_DOCKER),
    "UNICODE": ("héllo ☃ 日本 😀", NONE),
    "RTL_MARKS": ("\u202eabc\u202c \u200f\u05e9\u05dc\u05d5\u05dd\u200e\u00a0x", NONE),
    "BIG_60K": ("x" * (60 * 1024), NONE),
    "JSON_BLOB": (_JSON, NONE),
    "PEM_KEY": (_PEM, DOCKER),
    "NUL": ("a\x00b", frozenset({"dotenv", "dotenv-expand", "docker", "shell"})),
}
