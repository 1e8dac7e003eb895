"""The ``http`` check kind: probe URLs, sending no credentials (SPEC §12).

* No credentials: no auth, no cookies, no ``.netrc`` (the session ignores the environment's
  settings), and a URL with a user name or password in it is refused.
* At most 3 redirects, each hop checked again.
* Link-local and cloud-metadata addresses are refused — also when a name *resolves* to one:
  every connection resolves the name itself, refuses if any address is forbidden, and then
  connects to the address it checked (so a name cannot answer differently the second time).
* Concurrency: every distinct URL once, ``workers`` at a time, at most ``per_host`` to one host.

Probes connect directly (no proxy), so the address checked is the address reached.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from sre_maturity.clients.http_retry import mount_retries
from sre_maturity.clients.sources import USER_AGENT, re_space
from sre_maturity.rules.targets import url_problem
from sre_maturity.support.errors import SourceError

MAX_REDIRECTS = 3
MAX_BODY = 1024 * 1024  # what `contains=` looks through
# Cloud metadata services that do not sit on a link-local address (AWS IPv6, Alibaba, Oracle
# on some networks) and their well-known names.
METADATA_ADDRESSES = {ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")}
METADATA_NAMES = {"metadata", "metadata.google.internal", "metadata.goog",
                  "instance-data", "instance-data.ec2.internal", "metadata.azure.internal"}


class AddressRefused(SourceError):
    """The URL's host is (or resolves to) an address checks may not reach."""


class ProbeAnswer(NamedTuple):
    """What a probe saw: the final status and URL, the URLs it was sent through, and the
    start of the body (text)."""

    status: int
    url: str
    hops: tuple[str, ...]
    body: str


def refused_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why a check may not reach ``ip`` (None: it may)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_unspecified or ip.is_multicast:
        return "not a host address"
    return None


def refused_host(host: str) -> str | None:
    """Why a host name (or literal address) may not be probed before resolving it."""
    name = host.strip("[]").rstrip(".").lower()
    if name in METADATA_NAMES:
        return "a cloud metadata name"
    try:
        return refused_ip(ipaddress.ip_address(name))
    except ValueError:
        return None


def vetted_address(host: str, port: int) -> str:
    """Resolve ``host`` and return one address to connect to; every address it resolves to
    must be allowed (a name with one forbidden address is refused whole)."""
    reason = refused_host(host)
    if reason:
        raise AddressRefused(f"{host} is {reason}; http checks never reach it")
    infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        reason = refused_ip(ipaddress.ip_address(address))
        if reason:
            raise AddressRefused(f"{host} resolves to {address}, {reason}; http checks never "
                                 "reach it")
    return str(infos[0][4][0])


class _Vetting:
    """Connect only to the address checked by :func:`vetted_address`."""

    host: str
    port: int
    _dns_host: str

    def _new_conn(self) -> socket.socket:
        # A name that does not resolve is left to urllib3, which reports it by name.
        with contextlib.suppress(socket.gaierror):
            self._dns_host = vetted_address(self.host, self.port)
        return super()._new_conn()  # type: ignore[misc]


class _VettedHTTP(_Vetting, HTTPConnection):
    pass


class _VettedHTTPS(_Vetting, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _VettedHTTP


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _VettedHTTPS


class VettedAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections go only to vetted addresses."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def check_url(url: str) -> None:
    """Refuse a URL a probe may not fetch: not http(s), no host, credentials in it, or a
    forbidden host (before resolving)."""
    problem = url_problem(url)
    if problem:
        raise AddressRefused(problem)
    parts = urlsplit(url)
    reason = refused_host(parts.hostname or "")
    if reason:
        raise AddressRefused(f"{parts.hostname} is {reason}; http checks never reach it")


class Prober:
    """Probes URLs: one session per worker thread, no credentials, vetted addresses."""

    def __init__(self, *, timeout: float = 15.0, retries: int = 2, backoff: float = 0.5,
                 workers: int = 16, per_host: int = 4) -> None:
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.workers = workers
        self.per_host = per_host
        self._local = threading.local()
        self._host_locks: dict[str, threading.BoundedSemaphore] = defaultdict(
            lambda: threading.BoundedSemaphore(self.per_host))
        self._guard = threading.Lock()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # No .netrc credentials and no proxy: only what this code decides is sent, and
            # the connection goes to the address that was checked.
            session.trust_env = False
            session.verify = (os.environ.get("REQUESTS_CA_BUNDLE")
                              or os.environ.get("CURL_CA_BUNDLE") or True)
            session.headers = requests.structures.CaseInsensitiveDict(
                {"User-Agent": USER_AGENT, "Accept": "*/*"})
            mount_retries(session, retries=self.retries, backoff=self.backoff,
                          max_retry_after=10.0, allowed_methods=frozenset({"GET"}),
                          adapter_class=VettedAdapter)
            self._local.session = session
        return session

    def _host_lock(self, url: str) -> threading.BoundedSemaphore:
        with self._guard:
            return self._host_locks[(urlsplit(url).hostname or "").lower()]

    def probe(self, url: str) -> ProbeAnswer:
        """Fetch ``url`` following at most 3 redirects.

        :raises AddressRefused: the URL or a redirect goes where checks may not go
        :raises SourceError: it could not tell (timeout, connection, 5xx, too many redirects)
        """
        hops: list[str] = []
        current = url
        while True:
            check_url(current)
            # The whole exchange, body included, counts against the host's bound.
            with self._host_lock(current):
                resp = self._get(current)
                try:
                    body = "" if resp.is_redirect else _body(resp)
                finally:
                    resp.close()
            if resp.is_redirect and resp.headers.get("Location"):
                hops.append(current)
                if len(hops) > MAX_REDIRECTS:
                    raise SourceError(f"more than {MAX_REDIRECTS} redirects from {url}")
                current = urljoin(current, resp.headers["Location"])
                continue
            if resp.status_code >= 500:
                raise SourceError(f"{urlsplit(current).netloc} answered HTTP "
                                  f"{resp.status_code}; try again later")
            return ProbeAnswer(resp.status_code, current, tuple(hops), body)

    def _get(self, url: str) -> requests.Response:
        host = urlsplit(url).netloc
        try:
            return self._session().get(url, timeout=self.timeout, allow_redirects=False,
                                       stream=True)
        except AddressRefused:
            raise
        except requests.exceptions.SSLError as exc:
            raise SourceError(f"TLS verification of {host} failed; if your network uses its "
                              "own certificate authority, set REQUESTS_CA_BUNDLE") from exc
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            text = repr(exc)
            if "NameResolutionError" in text or "Name or service not known" in text:
                raise SourceError(f"host name {urlsplit(url).hostname} not found") from exc
            if "Read timed out" in text or isinstance(exc, requests.exceptions.ReadTimeout):
                raise SourceError(f"{host} did not answer within {self.timeout:g} s") from exc
            raise SourceError(f"cannot connect to {host} "
                              f"({'connection refused' if 'refused' in text else 'failed'})"
                              ) from exc
        except requests.exceptions.RequestException as exc:
            raise SourceError(f"request to {host} failed ({re_space(str(type(exc).__name__))})"
                              ) from exc

    def probe_all(self, urls: Iterable[str],
                  done: Callable[[str, ProbeAnswer | SourceError], None]) -> None:
        """Probe every distinct URL once, concurrently; ``done(url, answer or error)`` is called
        for each (from the worker threads)."""

        def one(url: str) -> None:
            try:
                result: ProbeAnswer | SourceError = self.probe(url)
            except SourceError as exc:
                result = exc
            done(url, result)

        distinct = list(dict.fromkeys(urls))
        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(distinct)))) as pool:
            for future in [pool.submit(one, url) for url in distinct]:
                future.result()


def _body(resp: requests.Response) -> str:
    data = b""
    for chunk in resp.iter_content(64 * 1024):
        data += chunk
        if len(data) >= MAX_BODY:
            break
    return data[:MAX_BODY].decode(resp.encoding or "utf-8", errors="replace")
