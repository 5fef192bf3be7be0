"""What the dashboard's client (``client.py``) and the CLI's fast JSON path (``commands/rawjson.py``)
share to reach a control server, so that both say the same: the replicas' URLs, the TLS check to
make, the answers that send a request on to the next replica, and the texts of a failure (the
server's ``detail``, a transport error with the proxy it went through).

Imports httpx and the standard library only: the fast path must not load the contract's models.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from urllib.parse import urlsplit
from urllib.request import getproxies

import httpx

#: Answers saying that this server (or the proxy before it) cannot serve now, where a replica may.
FAILOVER_STATUSES = frozenset({502, 503, 504})
#: The variables httpx takes a proxy from (trust_env), either case.
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


def server_urls(base_url: str | Sequence[str]) -> tuple[str, ...]:
    """The URLs of ``URL[,URL…]`` (or a sequence of them), without trailing slashes; ValueError for none."""
    items = base_url.split(",") if isinstance(base_url, str) else list(base_url)
    urls = tuple(item.strip().rstrip("/") for item in items)
    if not urls or "" in urls:
        raise ValueError(f"no server URL in {base_url!r}")
    return urls


def plain_http_only(base_url: str) -> bool:
    """True when requests to ``base_url`` can never use TLS: an ``http://`` URL and no proxy
    variable that httpx would honour (a proxy may itself be reached over HTTPS)."""
    if not base_url.lower().startswith("http://"):
        return False
    return not any(os.environ.get(name) or os.environ.get(name.upper()) for name in PROXY_VARIABLES)


def tls_verify(verify: str | bool | ssl.SSLContext, urls: Sequence[str]) -> ssl.SSLContext | bool:
    """httpx's ``verify`` for these URLs: a CA bundle path as an SSLContext (httpx 0.28 wants one);
    ``False`` when no TLS can happen (http:// only, no proxy, redirects not followed), which skips
    loading the CA bundle, ~20 ms of every command's start (DESIGN.md: agents --json < 0.3 s)."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    if verify is True and all(plain_http_only(url) for url in urls):
        return False
    return verify


def detail(response: httpx.Response) -> str:
    """What an error answer says: the server's ``detail`` (FastAPI's validation errors joined, each
    with the field it names), a plain text body's first line, or the status's reason (a proxy's HTML
    page is not shown)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        if not text or text.startswith("<"):
            return response.reason_phrase
        return text.splitlines()[0][:300]
    found = body.get("detail") if isinstance(body, dict) else None
    if isinstance(found, str):
        return found
    if isinstance(found, list):  # FastAPI's validation errors
        parts = []
        for item in found:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", "")))
        return "; ".join(parts) or response.reason_phrase
    return response.reason_phrase


def proxy_for(url: str) -> str | None:
    """The proxy httpx sends a request for ``url`` through (from the environment), if any."""
    proxies = getproxies()
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    for entry in (e.strip().lower() for e in proxies.get("no", "").split(",")):
        # NO_PROXY as httpx reads it: "*", a host (and its subdomains), ".domain" (its subdomains)
        if entry == "*" or (entry and (host == entry or host.endswith(entry if entry[0] == "." else "." + entry))):
            return None
    return proxies.get(parts.scheme) or proxies.get("all")


#: How httpx's async and sync clients word a refused connection (anyio's, the socket's).
_REFUSED = ("All connection attempts failed", "[Errno 111] Connection refused")


def unreachable(url: str, exc: httpx.TransportError) -> str:
    """One line for a request to ``url`` that got no answer: the same whichever httpx client (sync
    or async: they word a refused connection differently) and naming the proxy it went through."""
    if isinstance(exc, httpx.TimeoutException):
        why = "no answer in time"
    else:
        why = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError) and why in (
            "All connection attempts failed",
            "[Errno 111] Connection refused",
        ):
            why = "connection refused"
    proxy = proxy_for(url)
    if proxy is not None and isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError)):
        why += f" (through the proxy {_no_password(proxy)})"
    return f"{url}: {why}"


def _no_password(proxy: str) -> str:
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.password is None:
        return proxy
    return parts._replace(
        netloc=f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    ).geturl()
