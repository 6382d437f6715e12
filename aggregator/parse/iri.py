"""Links and ids taken from sources, made fit to republish. Pure functions.

A feed's links and ids are only roughly URIs: a raw space (an id "Correct Value"
joined onto the feed's URL), a "%" standing alone, quotes, a host in another
script, a ``urn:uuid:`` with a digit too many. Whatever we publish must read as a
URI to every reader and to the W3C feed validator, which takes RFC 3986's
characters only (a host aside). So, where a document is written:

- characters a URI cannot carry are percent-encoded as UTF-8 (a "%" that starts
  no escape included);
- a host in another script stays in its script, unless one of its letters can be
  taken for a Latin one (``pаypаl`` with a Cyrillic а: Unicode's confusables, by
  confusable-homoglyphs) or the validator could not read the link with it: then
  it is shown in ASCII (IDNA, ``xn--``);
- what cannot be made a URI (no host, a host IDNA refuses, a malformed uuid)
  gives "" or None, and the caller writes no link or an id of its own.

The store keeps what the source sent.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from urllib.parse import quote, urlsplit

from aggregator.parse.xmlchars import MAX_URL, strip_control

# What RFC 3986 lets stand unescaped in each part (besides "%XX" escapes).
_SUB_DELIMS = "!$&'()*+,;="
_PATH_SAFE = _SUB_DELIMS + ":@/"
_QUERY_SAFE = _PATH_SAFE + "?"
_USER_SAFE = _SUB_DELIMS + ":"
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_CHARS = r"(?:[-A-Za-z0-9._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*"
# A link that needs nothing done: lower-case http(s), a plain ASCII host, and only
# characters a URI may hold. Nearly every link a feed carries.
_PLAIN_LINK = re.compile(
    rf"https?://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{{1,5}})?"
    rf"(?:[/?]{_CHARS})?(?:#{_CHARS})?\Z"
)
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_ASCII_HOST = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=]+\Z")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
# The validator's patterns for these schemes (RFC 2141 names, RFC 4151 tags).
_URN_NID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{1,31}\Z")
_URN_SAFE = "()+,-.:=@;$_!*'"
_TAG = re.compile(
    r"tag:([a-z0-9\-._]+?@)?[a-z0-9.\-]+?,\d{4}(-\d{2}(-\d{2})?)?:"
    r"[0-9a-zA-Z;/?:@&=+$.\-_!~*'()%,]*(#[0-9a-zA-Z;/?:@&=+$.\-_!~*'()%,]*)?\Z"
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def link(value: str) -> str:
    """An absolute http(s) URL as a URI to publish, or "" when it cannot be one."""
    if _PLAIN_LINK.match(value):
        return value
    return _http(value, canonical=False) or ""


def ascii_link(value: str) -> str:
    """link(value) in ASCII whatever script its host is in (IDNA): a URI, for formats
    whose links may not be IRIs (RSS 2.0)."""
    if value.isascii():
        return link(value)
    return _http(value, canonical=False, script_host=False) or ""


def feed_id(value: str) -> str | None:
    """An id (http(s), urn or tag) as the ASCII URI in canonical form the validator
    asks atom:id for (lower-case scheme and host, no default port, escapes only
    where needed), or None when it cannot be made one."""
    text = _cleaned(value)
    scheme = text.partition(":")[0].lower()
    if scheme in ("http", "https"):
        return _http(text, canonical=True)
    if scheme == "urn":
        return _urn(text)
    if scheme == "tag":
        authority, comma, rest = text[4:].partition(",")  # a name or an address: any case
        tag = f"tag:{authority.lower()}{comma}{_escaped(rest, _QUERY_SAFE + '#')}"
        return tag if _TAG.match(tag) else None
    return None


def _cleaned(value: str) -> str:
    text = strip_control(value or "").strip()
    return text if len(text) <= MAX_URL else ""


def _escaped(text: str, safe: str) -> str:
    """Every character outside `safe` and the unreserved ones percent-encoded as UTF-8,
    escapes kept (a "%" that starts none is escaped itself)."""
    return quote(_LONE_PERCENT.sub("%25", text), safe=safe + "%")


def _http(value: str, *, canonical: bool, script_host: bool = True) -> str | None:
    text = _cleaned(value)
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return None
    userinfo, at, hostport = parts.netloc.rpartition("@")
    found = _host_and_port(hostport)
    if found is None:
        return None
    host, port = found
    if canonical and host.startswith("["):
        return None  # the validator reads no IPv6 literal in an id (a full URI)
    if canonical and port == _DEFAULT_PORTS[scheme]:
        port = ""
    rest = _escaped(parts.path, _PATH_SAFE)
    if canonical:
        rest = _remove_dot_segments(rest) or "/"
    if parts.query or text.endswith("?"):
        rest += "?" + _escaped(parts.query, _QUERY_SAFE)
    if parts.fragment:
        rest += "#" + _escaped(parts.fragment, _QUERY_SAFE)
    if canonical:
        rest = _ESCAPE.sub(_normal_escape, rest)
    start = f"{scheme}://{_escaped(userinfo, _USER_SAFE)}{at}"
    port = f":{port}" if port else ""
    shown = None if canonical or not script_host else _shown_host(hostport.partition(":")[0])
    if shown and _validator_reads(f"{start}{shown}{port}{rest}"):
        return f"{start}{shown}{port}{rest}"
    return f"{start}{host}{port}{rest}"


def _host_and_port(hostport: str) -> tuple[str, str] | None:
    """(host in lower-case ASCII, port digits or "") of an authority's host part, or
    None when it cannot be a host. A name in another script is given in IDNA."""
    if hostport.startswith("["):
        literal, _, port = hostport[1:].partition("]")
        try:
            host = f"[{ipaddress.IPv6Address(literal).compressed}]"
        except ValueError:  # a zone, or no address at all
            return None
        if port and not port.startswith(":"):
            return None
        port = port[1:]
    else:
        name, _, port = hostport.partition(":")
        host = _ascii_host(name) or ""
        if not host:
            return None
    if port and not (port.isdigit() and port.isascii()):
        return None
    return host.lower(), port


@functools.lru_cache(maxsize=512)
def _ascii_host(name: str) -> str | None:
    if not name.isascii():
        try:  # IDNA passes "}" or "%" through as they are: checked below as ASCII is
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return name if _ASCII_HOST.match(name) else None


@functools.lru_cache(maxsize=512)
def _shown_host(name: str) -> str | None:
    """A host written in another script, as IDNA reads it (normalised), when no label
    of it can pass for Latin; None for an ASCII one or one that can."""
    if name.isascii():
        return None
    try:
        unicode = name.encode("idna").decode("idna")
    except UnicodeError:
        return None
    return None if any(map(_passes_for_latin, unicode.split("."))) else unicode


def _passes_for_latin(label: str) -> bool:
    """Whether a letter of another script in the label looks like a Latin one."""
    from confusable_homoglyphs import confusables  # 16 MB of tables: loaded when needed

    return bool(confusables.is_confusable(label, preferred_aliases=["latin", "common"]))


def _validator_reads(uri: str) -> bool:
    """Whether the W3C feed validator reads a link with a host in another script as a
    URI: it IDNA-encodes the whole value, label by label between dots, and a label it
    cannot encode (longer than 63 characters, say) leaves the value unread."""
    try:
        uri.encode("idna")
    except UnicodeError:
        return False
    return True


def _normal_escape(found: re.Match[str]) -> str:
    """An escape as canonical URIs write it: decoded when it is of an unreserved
    character, in upper case otherwise."""
    character = chr(int(found[1], 16))
    return character if character in _UNRESERVED else found[0].upper()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: "/a/./b/../c" is "/a/c"."""
    if "." not in path:
        return path
    output: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    return "/".join(output)


def _urn(text: str) -> str | None:
    _, nid, specific = [*text.split(":", 2), "", ""][:3]
    if nid.lower() == "uuid":
        uuid = specific.lower()
        return f"urn:uuid:{uuid}" if _UUID.match(uuid) else None
    if not _URN_NID.match(nid) or not specific:
        return None
    return f"urn:{nid}:{_escaped(specific, _URN_SAFE)}"
