"""Credentials out of URLs before they are shown or stored (storage and tracking URIs)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

__all__ = ["mask_text", "mask_url"]

_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):[^\s@/]+@")

_SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "token", "access_token", "secret")


def mask_url(url: str | None) -> str | None:
    """`url` with any password (user:password@, ?password=...) replaced by ***.

    Used for every URL MixBench prints or records (messages, best.json, study attributes,
    MLflow tags, reports); paths and plain file names come back unchanged.
    """
    if not url or "://" not in url:
        return url
    scheme, _, rest = url.partition("://")
    ends = [i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0]
    cut = min(ends) if ends else len(rest)
    netloc, tail = rest[:cut], rest[cut:]
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
        elif userinfo and scheme.lower() in ("http", "https"):
            netloc = f"***@{host}"  # a bare token as the user name
    path, mark, query = tail.partition("?")
    if mark:
        fragment = ""
        if "#" in query:
            query, fragment = query.split("#", 1)
            fragment = "#" + fragment
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_QUERY_KEYS for k, _ in pairs):
            masked = [(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs]
            query = urlencode(masked, safe="*/:")
        tail = f"{path}?{query}{fragment}"
    return f"{scheme}://{netloc}{tail}"


def mask_text(text: str) -> str:
    """`text` (e.g. an exception message quoting a URL) with every user:password@ in a URL
    replaced by user:***@."""
    return _USERINFO.sub(r"\1:***@", text)
