"""Which browser origins and `Host` names the daemon serves (plain rules, no I/O).

A page on another origin must neither read a socket nor forge a write (a
`text/plain` POST needs no CORS preflight), and a `Host` that is not the
daemon's means a DNS-rebinding page. By default only loopback is allowed; the
operator adds origins and host names. A wildcard listen address with no host
list accepts any `Host`: auth is mandatory there (config.validate).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

ANY = "*"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")


def is_loopback_name(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    """A listen address that is every interface, so it names no host."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return host in ("", ANY)


def host_name(value: str) -> str:
    """A `Host` header (or configured name) without its port, lower case, IPs canonical."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        name = value[1:end] if end > 0 else value
    else:
        name, colon, port = value.rpartition(":")
        if not (colon and port.isdigit() and ":" not in name):
            name = value
    name = name.rstrip(".")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def normalize_origin(origin: str) -> str:
    """`scheme://host[:port]` in lower case, default port and trailing slash dropped."""
    parts = urlsplit(origin.strip().lower())
    try:
        port = parts.port
    except ValueError:
        return origin.strip().lower()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port is None or _DEFAULT_PORTS.get(parts.scheme) == port:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def origin_error(origin: str) -> str | None:
    """Why a configured `--allowed-origin` is not one, or None."""
    if origin == ANY:
        return None
    parts = urlsplit(origin.strip())
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return f"{origin!r} has a bad port"
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        return f"{origin!r} is not * or http(s)://host[:port]"
    return None


def host_error(host: str) -> str | None:
    """Why a configured `--allowed-host` is not a host name or address, or None."""
    if host == ANY:
        return None
    name = host.strip().lower().strip("[]")
    try:
        ipaddress.ip_address(name)
        return None
    except ValueError:
        pass
    if not _HOST_NAME.fullmatch(name):
        return f"{host!r} is not * or a host name or address (without a port)"
    return None


def _is_loopback_origin(origin: str) -> bool:
    parts = urlsplit(origin)
    return parts.scheme in _DEFAULT_PORTS and is_loopback_name(host_name(parts.hostname or ""))


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    """Requests without `Origin` are not from a browser page: the check is for pages."""

    any: bool
    allowed: frozenset[str]

    @classmethod
    def of(cls, configured: tuple[str, ...]) -> OriginPolicy:
        return cls(ANY in configured, frozenset(normalize_origin(o) for o in configured))

    def allows(self, origin: str | None) -> bool:
        if origin is None or self.any:
            return True
        normal = normalize_origin(origin)
        return normal in self.allowed or _is_loopback_origin(normal)


@dataclass(frozen=True, slots=True)
class HostPolicy:
    any: bool
    allowed: frozenset[str]

    @classmethod
    def of(cls, listen: str, configured: tuple[str, ...]) -> HostPolicy:
        names = {host_name(h) for h in configured}
        if ANY in configured or (is_wildcard(listen) and not configured):
            return cls(True, frozenset())
        if not is_wildcard(listen):
            names.add(host_name(listen))
        return cls(False, frozenset(names))

    def allows(self, host: str | None) -> bool:
        # HTTP/1.0 clients may send no Host; browsers always do.
        if host is None or self.any:
            return True
        name = host_name(host)
        return name in self.allowed or is_loopback_name(name)
