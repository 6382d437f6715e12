"""Private address space: what a redirected or untrusted fetch may not reach (SSRF)."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass


def is_private_address(address: str) -> bool:
    """True for an IP address in loopback, private, link-local, reserved or unspecified
    space ("" or a name: False)."""
    try:
        ip = ipaddress.ip_address(address.strip("[]").partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_unspecified
    )


def is_private_host(host: str) -> bool:
    """True when a host name or address points at private space (see is_private_address);
    names are looked up here. Only for fetches through a proxy: see Fetcher.hops."""
    if is_private_address(host):
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return any(is_private_address(str(info[4][0])) for info in infos)


def proxy_configured() -> bool:
    """Whether curl will send requests through a proxy named in the environment (the
    variables curl reads: no upper-case HTTP_PROXY)."""
    names = ("http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
    return any(os.environ.get(name) for name in names)


@dataclass(frozen=True)
class Guard:
    """The addresses a request may not connect to: after a redirect from public space,
    private ones (SSRF). Checked on the addresses curl itself resolved, as it opens each
    connection, so no name is looked up outside the request's timeouts, nor answered
    one way to the check and another way to the connection."""

    target: str  # the redirect's URL, for the error
    private: Callable[[str], bool]
    untrusted: bool = False  # a URL from a source's content: never private space

    def refuses(self, address: str) -> bool:
        return self.private(address)


def refusal(target: str, address: str = "", untrusted: bool = False) -> str:
    at = f" ({address})" if address else ""
    if untrusted:
        return f"refused a private address for a link taken from a source: {target}{at}"
    return f"refused redirect from a public address to a private one: {target}{at}"
