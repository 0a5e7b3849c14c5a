"""http(s) job sources, fetched into storage: only from hosts a setting names, never from private addresses.

Off by default (``FACEPRINT_ALLOWED_URL_HOSTS`` unset: a URL source is ``invalid_source``). When a URL's
host is allowed, every address it resolves to must be public (no loopback, private, link-local, reserved
or multicast address), redirects are followed only to the same host (and checked again), and the body is
streamed into the upload store under the same size limit and content checks as an upload. The job then
holds the ``storage://`` URI of what was fetched.

Example:
    >>> check_url("https://images.example.org/a.jpg", allowed_hosts=("images.example.org",))
    ('https', 'images.example.org', 443)
    >>> check_url("http://10.0.0.1/a.jpg", allowed_hosts=("images.example.org",))
    Traceback (most recent call last):
    ...
    faceprint.server.fetch.UrlNotAllowedError: 10.0.0.1 is not an allowed host for URL sources
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from faceprint.errors import InputError, UsageError
from faceprint.jobs.uploads import UploadRecord, UploadStore

__all__ = ["UrlFetchError", "UrlNotAllowedError", "check_url", "fetch_url"]

Resolver = Callable[[str, int], Sequence[str]]
_MAX_REDIRECTS = 3


class UrlNotAllowedError(UsageError):
    """A URL source whose scheme, host or address this server does not fetch from."""

    code = "url_not_allowed"
    http_status = 422


class UrlFetchError(InputError):
    """The URL could not be fetched (network error, HTTP error status, too many redirects)."""

    code = "url_fetch_failed"
    http_status = 422


def check_url(url: str, *, allowed_hosts: Sequence[str]) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an http(s) URL whose host is allowed; else :class:`UrlNotAllowedError`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UrlNotAllowedError(f"only http and https URLs are fetched, not {parts.scheme!r}")
    if parts.username is not None or parts.password is not None:
        raise UrlNotAllowedError("URLs with credentials are not fetched")
    host = (parts.hostname or "").lower()
    if not host or host not in {h.lower() for h in allowed_hosts}:
        raise UrlNotAllowedError(
            f"{host or '(no host)'} is not an allowed host for URL sources", details={"host": host}
        )
    try:
        port = parts.port if parts.port is not None else (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UrlNotAllowedError("the URL's port is not valid") from None
    return parts.scheme, host, port


def system_resolver(host: str, port: int) -> list[str]:
    try:
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
    except socket.gaierror as err:
        raise UrlFetchError(f"{host}: cannot resolve ({err.strerror})", details={"host": host}) from None


def _check_addresses(host: str, addresses: Sequence[str]) -> None:
    if not addresses:
        raise UrlFetchError(f"{host}: no address", details={"host": host})
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global or ip.is_multicast:
            raise UrlNotAllowedError(
                f"{host} resolves to {address}, a private or reserved address: not fetched", details={"host": host}
            )


class _Body:
    """A file-like ``read(n)`` over a streamed response (what :meth:`UploadStore.save` reads)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def fetch_url(
    url: str,
    *,
    allowed_hosts: Sequence[str],
    uploads: UploadStore,
    max_bytes: int,
    resolver: Resolver = system_resolver,
    client: httpx.Client | None = None,
    timeout_s: float = 30.0,
) -> UploadRecord:
    """Fetch an allowed URL into the upload store (see the module doc)."""
    _, host, _ = check_url(url, allowed_hosts=allowed_hosts)
    owned = client is None
    http = client if client is not None else httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False)
    try:
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            _, current_host, current_port = check_url(current, allowed_hosts=allowed_hosts)
            if current_host != host:
                raise UrlNotAllowedError(f"{url} redirects to another host ({current_host}): not followed")
            _check_addresses(current_host, resolver(current_host, current_port))
            try:
                with http.stream("GET", current) as response:
                    if response.is_redirect:
                        current = urljoin(current, response.headers.get("location", ""))
                        continue
                    if response.status_code != 200:
                        raise UrlFetchError(
                            f"{url}: HTTP {response.status_code}", details={"status": response.status_code}
                        )
                    name = urlsplit(current).path.rsplit("/", 1)[-1] or None
                    body: Any = _Body(response.iter_bytes())
                    return uploads.save(body, filename=name, max_bytes=max_bytes)
            except httpx.HTTPError as err:
                raise UrlFetchError(f"{url}: {type(err).__name__}: {err}") from None
        raise UrlFetchError(f"{url}: more than {_MAX_REDIRECTS} redirects")
    finally:
        if owned:
            http.close()
