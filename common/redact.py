"""One redaction helper for every URL, config value or text that may hold a credential.

Rules (docs/architecture.md, "Decisions"): no secret in a log line, an exception text, a DB row or a page.

- ``redact_url`` renders a URL safe to show. Store URLs (``postgresql://``, ``redis://``,
  ``smtp://``, ``amqp://``, ``influxdb://``…) keep scheme, host, port and path, with the password
  replaced; query parameters whose name looks secret (token, key, password…) are masked.
  ``http(s)://`` URLs (webhooks carry their token in the path or the query) keep only scheme,
  host and port: ``https://hooks.example.com/***``.
- ``redact_text`` removes known secret values (and any URL's credentials) from free text, such as
  an exception message that quoted a URL.
- ``url_secrets`` lists the parts of a URL that may be credentials (its password, secret query
  values, a webhook's token in its path), for ``redact_text`` and ``RedactingFilter`` to mask
  where a text quotes them without the URL around them.
- ``RedactingFilter`` is a ``logging.Filter`` that applies ``redact_text`` to every record: the
  composition root installs it once with the secrets of the settings.
- ``expand_env_refs`` resolves ``${ENV_NAME}`` references at the moment a credential is used, so
  configs and DB rows store the reference, never the value.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
# a query parameter, header or config key whose value is a credential
SECRET_NAME = re.compile(r"(token|key|secret|pass|pwd|auth|sig|credential)", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class UnresolvedReference(KeyError):
    """A ``${ENV_NAME}`` reference names a variable that is not set."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"environment variable {self.name} is not set (referenced as ${{{self.name}}})"


def redact_url(url: str) -> str:
    """``url`` safe to log or show (see the module docstring). Never raises."""
    if not isinstance(url, str) or "://" not in url:
        return url if isinstance(url, str) else repr(url)
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        if parts.port:
            host = f"{host}:{parts.port}"
    except ValueError:  # an unparsable URL: keep only what precedes any credentials
        return url.split("://", 1)[0] + "://" + MASK
    if parts.scheme in ("http", "https"):
        return urlunsplit((parts.scheme, host, "/" + MASK if (parts.path.strip("/") or parts.query) else "",
                           "", ""))
    netloc = host
    if parts.username or parts.password:
        user = parts.username or ""
        netloc = f"{user}:{MASK}@{host}" if parts.password else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if SECRET_NAME.search(k) else v) for k, v in pairs], safe="*")
    rendered = urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    if not netloc:  # urlunsplit drops an empty authority: keep sqlite:///path as written
        rendered = f"{parts.scheme}://{parts.path}" + (f"?{query}" if query else "")
    return rendered


def url_secrets(url: str) -> tuple[str, ...]:
    """The parts of ``url`` that may be credentials: its password (as written and decoded, also of
    a URL ``urlsplit`` cannot parse), the values of its secret-looking query parameters, and for
    ``http(s)`` URLs every path segment of 16 characters or more (a webhook's token)."""
    if not isinstance(url, str) or "://" not in url:
        return ()
    found: set[str] = set()
    password = None
    try:
        parts = urlsplit(url)
        password = parts.password
        found.update(v for k, v in parse_qsl(parts.query) if SECRET_NAME.search(k))
        if parts.scheme in ("http", "https"):
            found.update(seg for seg in parts.path.split("/") if len(seg) >= 16)
    except ValueError:
        pass
    if password is None and "@" in url:  # unparsable, or a password holding '/', '?' or '#'
        userinfo = url.split("://", 1)[1].rsplit("@", 1)[0]
        password = userinfo.split(":", 1)[1] if ":" in userinfo else None
    if password:
        found.update((password, unquote(password)))
    return tuple(sorted(v for v in found if v))


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret value masked and every URL in it redacted."""
    out = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        out = out.replace(secret, MASK)
    return out


class RedactingFilter(logging.Filter):
    """Masks secrets (and URL credentials) in every record that passes through the handler."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = {s for s in secrets if s and len(s) >= 4}

    def add(self, *secrets: str) -> None:
        self.secrets.update(s for s in secrets if s and len(s) >= 4)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        clean = redact_text(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, self.secrets)
        return True


def expand_env_refs(value: str, env: Mapping[str, str] | None = None) -> str:
    """``value`` with each ``${NAME}`` replaced from ``env`` (default ``os.environ``).

    Raises ``UnresolvedReference`` naming the variable when one is not set.
    """
    source = os.environ if env is None else env

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in source:
            raise UnresolvedReference(name)
        return source[name]

    return _ENV_REF.sub(sub, value)


def env_refs(value: str) -> list[str]:
    """The variable names ``value`` references as ``${NAME}``."""
    return _ENV_REF.findall(value)
