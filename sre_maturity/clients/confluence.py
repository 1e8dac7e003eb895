"""A thin Confluence client: read a page's storage body, write it back, keep the to-do table
up to date.

Two adapters sit behind one interface (``reference/confluence.md`` §1): Cloud speaks REST v2
(``/wiki/api/v2/pages/{id}``, e-mail + API token as basic auth) because its v1 content
endpoints are being removed (410); Data Center has no v2 pages API and speaks REST v1
(``/rest/api/content/{id}``, a personal access token as bearer). Both carry the same
storage-format body, so the table logic (``storage_format``) is shared.

Writes are careful (§3): a 409 means someone saved the page since we read it, so the page is
read again and the table re-applied to the *fresh* body; a 5xx or a timeout on the write may
hide a write that landed, so the page is read again and compared before anything is re-sent.
An unchanged table makes no write (§8). Credentials travel only in the ``Authorization``
header and never appear in a message or a log record.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import requests
from urllib3.exceptions import ReadTimeoutError

import config
from config import confluence_flavour, is_cloud_host
from sre_maturity.clients.http_retry import CappedRetry, mount_retries
from sre_maturity.render import storage_format
from sre_maturity.support.errors import ConfluenceError

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger("sre_tracker.confluence")

USER_AGENT = "sre-tracker (+confluence)"
BY_ID = 250  # the most page ids one Cloud "get pages" request takes
MESSAGE_PREFIX = "sre-tracker: "
_MAX_SERVER_TEXT = 300


class VersionConflict(ConfluenceError):
    """The page was saved by someone else after we read it (HTTP 409)."""


class PageNotFound(ConfluenceError):
    """The page does not exist or the account may not see it (HTTP 404)."""


ANONYMOUS = ("Confluence treated the request as anonymous, so the token was not accepted; "
             "create a new CONFLUENCE_PAT")


class TitleTaken(ConfluenceError):
    """A create was refused: the space holds a page with that title (titles are unique per
    space, confluence-create.md §4)."""


class WriteOutcomeUnknown(ConfluenceError):
    """A write got a 5xx answer, timed out or lost its connection: it may have been saved."""


class _ConfluenceRetry(CappedRetry):
    """A PUT is repeated only after 429 (refused before any work); after a 5xx or a read
    error it may have been saved, which the caller checks by reading the page again
    (``update_page``) instead of blindly sending it twice."""

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if method and method.upper() == "PUT":
            return status_code == 429
        return super().is_retry(method, status_code, has_retry_after)


class _Bearer(requests.auth.AuthBase):
    """``Authorization: Bearer <PAT>`` (Data Center personal access token)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request

    def __repr__(self) -> str:
        return "_Bearer(<hidden>)"


# ---------------------------------------------------------------------------- adapters
class _CloudApi:
    """Confluence Cloud, REST v2 pages API (§1-§3)."""

    name = "cloud"

    def page_path(self, page_id: str) -> str:
        return f"/api/v2/pages/{quote(page_id, safe='')}"

    def get_params(self) -> dict[str, str]:
        return {"body-format": "storage"}

    def read(self, data: Mapping[str, Any]) -> dict[str, Any]:
        body = ((data.get("body") or {}).get("storage") or {}).get("value")
        return _page(data, body)

    def payload(self, page_id: str, title: str, body: str, version: int,
                message: str) -> dict[str, Any]:
        # v2 requires id, status, title, body and version; minorEdit is not in its schema.
        return {"id": page_id, "status": "current", "title": title,
                "body": {"representation": "storage", "value": body},
                "version": {"number": version, "message": message}}

    def space(self, data: Mapping[str, Any]) -> str:
        return str(data.get("spaceId") or "")

    def children(self, page_id: str, versions: bool) -> tuple[str, dict[str, str]]:
        # A v2 listing of children (ChildPage) has no versions: see pages_by_id.
        return f"/api/v2/pages/{quote(page_id, safe='')}/children", {"limit": "250"}

    def pages_by_id(self, page_ids: Sequence[str]) -> tuple[str, dict[str, str]]:
        # Get pages filtered by id (at most 250 a request): PageBulk results with the version.
        return "/api/v2/pages", {"id": ",".join(page_ids), "limit": str(BY_ID)}

    def by_title(self, space: str, title: str) -> tuple[str, dict[str, str]]:
        return "/api/v2/pages", {"space-id": space, "title": title, "limit": "25"}

    def create_path(self) -> str:
        return "/api/v2/pages"

    def create_payload(self, space: str, parent_id: str, title: str, body: str
                       ) -> dict[str, Any]:
        # confluence-create.md §1: numeric spaceId, parentId, the storage body.
        return {"spaceId": space, "status": "current", "title": title, "parentId": parent_id,
                "body": {"representation": "storage", "value": body}}


class _DataCenterApi:
    """Confluence Data Center / Server, REST v1 content API (§1-§3)."""

    name = "datacenter"

    def page_path(self, page_id: str) -> str:
        return f"/rest/api/content/{quote(page_id, safe='')}"

    def get_params(self) -> dict[str, str]:
        return {"expand": "body.storage,version,space"}

    def read(self, data: Mapping[str, Any]) -> dict[str, Any]:
        body = ((data.get("body") or {}).get("storage") or {}).get("value")
        return _page(data, body)

    def payload(self, page_id: str, title: str, body: str, version: int,
                message: str) -> dict[str, Any]:
        # minorEdit: a table refresh should not e-mail every watcher of the page.
        return {"id": page_id, "type": "page", "title": title, "status": "current",
                "version": {"number": version, "message": message, "minorEdit": True},
                "body": {"storage": {"value": body, "representation": "storage"}}}

    def space(self, data: Mapping[str, Any]) -> str:
        return str((data.get("space") or {}).get("key") or "")

    def children(self, page_id: str, versions: bool) -> tuple[str, dict[str, str]]:
        params = {"limit": "200"}
        if versions:
            params["expand"] = "version"
        return f"/rest/api/content/{quote(page_id, safe='')}/child/page", params

    pages_by_id = None  # the listing of children carries the versions itself

    def by_title(self, space: str, title: str) -> tuple[str, dict[str, str]]:
        return "/rest/api/content", {"spaceKey": space, "title": title,
                                     "expand": "ancestors"}

    def create_path(self) -> str:
        return "/rest/api/content"

    def create_payload(self, space: str, parent_id: str, title: str, body: str
                       ) -> dict[str, Any]:
        # confluence-create.md §2: the space key, the parent as the one ancestor.
        return {"type": "page", "title": title, "space": {"key": space},
                "ancestors": [{"type": "page", "id": parent_id}],
                "body": {"storage": {"value": body, "representation": "storage"}}}


def _parent(data: Mapping[str, Any]) -> str:
    """The parent page id of a page as v2 (``parentId``) or v1 (last of ``ancestors``) gives
    it; "" when not said."""
    if data.get("parentId"):
        return str(data["parentId"])
    ancestors = data.get("ancestors") or []
    return str(ancestors[-1].get("id") or "") if ancestors else ""


def _child(data: Mapping[str, Any]) -> dict[str, Any]:
    """A page of a listing: ``{"id", "title"}``, with ``version`` and ``message`` when the
    listing gave its version."""
    child: dict[str, Any] = {"id": str(data.get("id", "")), "title": str(data.get("title") or "")}
    version = data.get("version")
    if isinstance(version, dict) and isinstance(version.get("number"), int):
        child.update(version=version["number"], message=str(version.get("message") or ""))
    return child


def _page(data: Mapping[str, Any], body: Any) -> dict[str, Any]:
    version = (data.get("version") or {}).get("number")
    if not isinstance(version, int):
        raise ConfluenceError("Confluence answered without a page version; check "
                              "CONFLUENCE_BASE_URL and CONFLUENCE_API")
    return {"id": str(data.get("id", "")), "title": str(data.get("title") or ""),
            "version": version, "body": body, "parent": _parent(data),
            "message": str((data.get("version") or {}).get("message") or "")}


# ---------------------------------------------------------------------------- the client
def _resolve_api(api: str, host: str) -> str:
    flavour = confluence_flavour(api, host)
    if flavour not in ("cloud", "datacenter"):
        raise ConfluenceError(f"CONFLUENCE_API must be cloud, datacenter or auto, not {flavour!r}")
    return flavour


def _base_url(base_url: str | None) -> str:
    url = (base_url or "").strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfluenceError("CONFLUENCE_BASE_URL must be an http(s) address such as "
                              "https://example.atlassian.net/wiki or https://wiki.example.com")
    if parts.username or parts.password:
        raise ConfluenceError("CONFLUENCE_BASE_URL must not contain a user name or password; "
                              "use CONFLUENCE_USER/CONFLUENCE_API_TOKEN or CONFLUENCE_PAT")
    if parts.query or parts.fragment:
        raise ConfluenceError("CONFLUENCE_BASE_URL must not contain ? or #; give the site "
                              "address only")
    for suffix in ("/rest/api", "/api/v2"):  # a pasted API address: keep the site part
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url


class ConfluenceClient:
    """One authenticated session against one Confluence site (Cloud or Data Center).

    Build it with :func:`make_client`. Every method returns plain data and raises
    ``ConfluenceError`` with one line saying what failed and which setting to fix.
    """

    def __init__(self, base_url: str, api: _CloudApi | _DataCenterApi,
                 auth: requests.auth.AuthBase, secrets: Iterable[str], *, timeout: float,
                 retries: int, backoff: float, max_retry_after: float) -> None:
        self.base_url = base_url
        self.api = api
        self.flavour = api.name
        self.host = urlsplit(base_url).netloc
        self.timeout = timeout
        self.retries = retries
        self.request_count = 0  # requests sent by this client (urllib3 retries not counted)
        for secret in secrets:
            config.remember_secret(secret)
        self.session = requests.Session()
        # trust_env stays True: REQUESTS_CA_BUNDLE and proxy variables keep working.
        self.session.auth = auth
        self.session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})
        mount_retries(self.session, retries=retries, backoff=backoff,
                      max_retry_after=max_retry_after, allowed_methods=frozenset({"GET"}),
                      retry_class=_ConfluenceRetry)

    def __repr__(self) -> str:
        return f"ConfluenceClient({self.base_url!r}, api={self.flavour!r})"

    def __enter__(self) -> ConfluenceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session and its connections."""
        self.session.close()

    # --- pages -------------------------------------------------------------------------------

    def get_page(self, page_id: str | int) -> dict[str, Any]:
        """Read a page: ``{"id", "title", "version": int, "body": str}`` (storage format).

        :raises ConfluenceError: not found, no permission, bad credentials, network trouble.
        """
        page_id = str(page_id).strip()
        resp = self._request("GET", self.api.page_path(page_id), page_id,
                             params=self.api.get_params())
        try:
            data = self._json(resp, page_id)
        except PageNotFound as exc:
            # Data Center runs a request with a wrong PAT as anonymous (CONFSERVER-98199), so
            # its 404 may really mean "bad token": ask who we are before blaming the page id.
            if self.flavour == "datacenter" and self._anonymous():
                raise self._error(ANONYMOUS) from exc
            raise
        page = self.api.read(data)
        page["space"] = self.api.space(data)
        if not isinstance(page["body"], str):
            raise ConfluenceError(f"page {page_id} came without its storage body; is it a "
                                  "Confluence page (not a whiteboard or database)?")
        return page

    def page_version(self, page_id: str | int) -> dict[str, Any]:
        """A page without its body: ``{"id", "title", "version": int, "message"}`` (one small
        read, to tell whether a page is still the version the tool last saw)."""
        page_id = str(page_id).strip()
        params = {} if self.flavour == "cloud" else {"expand": "version"}
        return self.api.read(self._json(self._request("GET", self.api.page_path(page_id),
                                                      page_id, params=params), page_id))

    def put_page(self, page_id: str | int, title: str, body: str, version: int,
                 message: str) -> dict[str, Any]:
        """Save a new version of a page; ``version`` is the current number + 1.

        :returns: ``{"id", "title", "version": int, "body": str}`` as saved
        :raises VersionConflict: the page changed since it was read (409)
        :raises WriteOutcomeUnknown: 5xx, timeout or lost connection: it may have been saved
        :raises ConfluenceError: refused (400 with the server's reason, 401, 403, 404, ...)
        """
        page_id = str(page_id).strip()
        payload = self.api.payload(page_id, title, body, version, message)
        resp = self._request("PUT", self.api.page_path(page_id), page_id, json=payload)
        saved = self.api.read(self._json(resp, page_id))
        if not isinstance(saved["body"], str):
            saved["body"] = body
        return saved

    def child_pages(self, page_id: str | int, *, versions: bool = False
                    ) -> list[dict[str, Any]]:
        """The direct child pages of a page: ``[{"id", "title"}]``, every page of the listing
        followed (v2 cursor, v1 offset: both through ``_links.next``).

        With ``versions`` each child also carries its current ``version`` (int) and that
        version's ``message``, where Confluence gave them: Data Center in the same listing
        (``expand=version``), Cloud, whose listing of children has none, in one more read per
        250 children (pages by id). A child without them (deleted meanwhile) is listed
        without."""
        page_id = str(page_id).strip()
        path, params = self.api.children(page_id, versions)
        out = [_child(r) for r in self._listing(path, params, page_id)]
        if versions and self.api.pages_by_id is not None:
            found: dict[str, dict[str, Any]] = {}
            for start in range(0, len(out), BY_ID):
                ids = [c["id"] for c in out[start:start + BY_ID]]
                path, params = self.api.pages_by_id(ids)
                found.update((c["id"], c) for c in map(_child, self._listing(path, params,
                                                                              page_id)))
            for child in out:
                for key in ("version", "message"):
                    if key in found.get(child["id"], {}):
                        child[key] = found[child["id"]][key]
        return out

    def _listing(self, path: str, params: dict[str, str] | None, page_id: str
                 ) -> Iterator[dict[str, Any]]:
        """The results of a listing, every page of it followed through ``_links.next``."""
        for _ in range(1000):  # a bound, not a limit anyone reaches: 200-250 results a read
            data = self._json(self._request("GET", path, page_id, params=params), page_id)
            yield from (r for r in data.get("results") or [] if isinstance(r, dict))
            nxt = str((data.get("_links") or {}).get("next") or "")
            if not nxt:
                break
            path, params = self._next_path(nxt), None

    def _next_path(self, nxt: str) -> str:
        """A ``_links.next`` (relative to the site, or to the API base) as a path under
        :attr:`base_url`."""
        split = urlsplit(nxt)
        path = split.path + (f"?{split.query}" if split.query else "")
        prefix = urlsplit(self.base_url).path.rstrip("/")
        if prefix and path.startswith(prefix + "/"):
            path = path[len(prefix):]
        return path

    def find_page(self, space: str, title: str) -> dict[str, str] | None:
        """The page titled ``title`` in the space (``{"id", "title", "parent"}``), or None."""
        path, params = self.api.by_title(space, title)
        data = self._json(self._request("GET", path, None, params=params), None)
        for r in data.get("results") or []:
            if isinstance(r, dict) and str(r.get("title") or "").casefold() == title.casefold():
                return {"id": str(r.get("id", "")), "title": str(r.get("title") or ""),
                        "parent": _parent(r)}
        return None

    def create_page(self, space: str, parent_id: str | int, title: str, body: str
                    ) -> dict[str, Any]:
        """Create a child page of ``parent_id`` in ``space`` (v2: the space id, v1: its key).

        :returns: ``{"id", "title", "version": int, "body": str, "parent"}`` as created
        :raises TitleTaken: a page with this title exists in the space already
        :raises WriteOutcomeUnknown: 5xx, timeout or lost connection: it may have been made
        """
        parent_id = str(parent_id).strip()
        payload = self.api.create_payload(space, parent_id, title, body)
        resp = self._request("POST", self.api.create_path(), None, json=payload)
        if resp.status_code == 400 and "already exists" in _server_text(resp).lower():
            raise self._error(f"a page titled '{title}' already exists in the space",
                              TitleTaken)
        created = self.api.read(self._json(resp, None))
        if not isinstance(created["body"], str):
            created["body"] = body
        return created

    def current_user(self) -> dict[str, Any] | None:
        """Data Center: who the token authenticates as (None where not available).

        A wrong PAT is not rejected on Data Center when anonymous access is on; the requests
        just run as anonymous (§1, CONFSERVER-98199), which this call reveals.
        """
        if self.flavour != "datacenter":
            return None
        resp = self._request("GET", "/rest/api/user/current", None)
        if resp.status_code in (404, 405):
            return None
        return self._json(resp, None)

    def _anonymous(self) -> bool:
        try:
            user = self.current_user()
        except ConfluenceError:
            return False
        return user is not None and str(user.get("type", "")).lower() == "anonymous"

    # --- transport ---------------------------------------------------------------------------

    def _hide(self, text: str) -> str:
        return config.mask_secrets(text)

    def _error(self, message: str, kind: type[ConfluenceError] = ConfluenceError
               ) -> ConfluenceError:
        return kind(self._hide(message))

    def _request(self, method: str, path: str, page_id: str | None, *,
                 params: dict[str, str] | None = None,
                 json: Any = None) -> requests.Response:
        self.request_count += 1
        what = f"page {page_id}" if page_id else path
        try:
            # No redirects: a redirect to another host must not carry the credentials.
            resp = self.session.request(method, self.base_url + path, params=params, json=json,
                                        timeout=self.timeout, allow_redirects=False)
        except requests.exceptions.SSLError as exc:
            raise self._error(
                f"TLS verification of {self.host} failed; if your network uses its own "
                "certificate authority, set REQUESTS_CA_BUNDLE to its bundle file") from exc
        except requests.exceptions.ConnectTimeout as exc:
            raise self._error(f"cannot reach Confluence at {self.host} (connection timed out);"
                              " check CONFLUENCE_BASE_URL and the network or proxy") from exc
        except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as exc:
            # Read timeouts that used up urllib3's retries arrive as ConnectionError.
            if isinstance(exc, requests.exceptions.Timeout) or _timed_out(exc):
                kind = WriteOutcomeUnknown if method != "GET" else ConfluenceError
                raise self._error(f"Confluence at {self.host} did not answer {method} {what} "
                                  f"within {self.timeout:g} s; try again later", kind) from exc
            if method != "GET" and not _before_sending(exc):
                raise self._error(f"the connection to Confluence at {self.host} broke during "
                                  f"{method} {what}; try again later", WriteOutcomeUnknown
                                  ) from exc
            raise self._error(f"cannot reach Confluence at {self.host} ({_reason(exc)}); check "
                              "CONFLUENCE_BASE_URL and the network or proxy") from exc
        except requests.exceptions.RequestException as exc:
            raise self._error(f"request to Confluence at {self.host} failed "
                              f"({type(exc).__name__}); check CONFLUENCE_BASE_URL") from exc
        log.debug("%s %s -> HTTP %s (%.0f ms)", method, urlsplit(resp.url).path,
                  resp.status_code, resp.elapsed.total_seconds() * 1000)
        return resp

    def _json(self, resp: requests.Response, page_id: str | None) -> dict[str, Any]:
        if resp.status_code >= 300:
            raise self._status_error(resp, page_id)
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise self._error(f"Confluence at {self.host} answered with something other than "
                              "JSON; check CONFLUENCE_BASE_URL (Cloud addresses end in /wiki)")
        return data

    def _status_error(self, resp: requests.Response, page_id: str | None) -> ConfluenceError:
        status = resp.status_code
        method = resp.request.method if resp.request is not None else "GET"
        what = f"page {page_id}" if page_id else "the request"
        detail = _server_text(resp)
        said = f": {detail}" if detail else ""
        if 300 <= status < 400:
            target = urlsplit(resp.headers.get("Location", "")).netloc or "another address"
            return self._error(f"Confluence at {self.host} redirected to {target}; set "
                               "CONFLUENCE_BASE_URL to the final address (Cloud: "
                               "https://<site>.atlassian.net/wiki)")
        if status == 401:
            return self._error("Confluence rejected the credentials (check CONFLUENCE_USER/"
                               "CONFLUENCE_API_TOKEN or CONFLUENCE_PAT)")
        if status == 403:
            return self._error(f"no permission for {what} (HTTP 403{said}); give the account of "
                               "CONFLUENCE_USER/CONFLUENCE_PAT view and edit rights (page "
                               "restrictions, space permissions) or use another account")
        if status == 404:
            if page_id is None or not _is_json(resp):
                # Confluence's own 404 is JSON; an HTML page: the address is not the API.
                return self._error(f"Confluence at {self.host} has no such API (HTTP 404); "
                                   "check CONFLUENCE_BASE_URL and CONFLUENCE_API")
            return self._error(f"page {page_id} not found or no permission (check "
                               "CONFLUENCE_PAGE_ID)", PageNotFound)
        if status == 409:
            return self._error(f"{what} was changed by someone else meanwhile (HTTP 409{said})",
                               VersionConflict)
        if status == 410:
            return self._error("this endpoint is gone on Cloud: use CONFLUENCE_API=cloud")
        if status == 413:
            return self._error(f"Confluence refused {what} as too large (HTTP 413)")
        if status == 429:
            return self._error(f"Confluence kept answering 429 Too Many Requests after "
                               f"{self.retries} retries; try again later")
        if status >= 500:
            kind = WriteOutcomeUnknown if method != "GET" else ConfluenceError
            return self._error(f"Confluence at {self.host} answered HTTP {status} to {method} "
                               f"{what}; try again later", kind)
        if status == 400:
            return self._error(f"Confluence refused {method} {what} (HTTP 400){said}")
        return self._error(f"unexpected HTTP {status} from Confluence for {method} {what}{said}")


def _before_sending(exc: Exception) -> bool:
    """Whether a connection error happened before the request could reach the server."""
    text = repr(exc)
    return any(s in text for s in ("NewConnectionError", "NameResolutionError",
                                   "Failed to establish", "ConnectTimeout"))


def _timed_out(exc: Exception) -> bool:
    """Whether a connection error is a read timeout wrapped by urllib3's ``MaxRetryError``."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, ReadTimeoutError)


def _is_json(resp: requests.Response) -> bool:
    try:
        return isinstance(resp.json(), dict)
    except ValueError:
        return False


def _reason(exc: Exception) -> str:
    text = repr(exc)
    if "NameResolutionError" in text or "Name or service not known" in text or \
            "nodename nor servname" in text or "getaddrinfo failed" in text:
        return "host name not found"
    if "Connection refused" in text or "ConnectionRefused" in text:
        return "connection refused"
    if "ProxyError" in text:
        return "proxy error"
    return "connection failed"


def _server_text(resp: requests.Response) -> str:
    """The server's own reason from either error envelope (v1 ``message``, v2 ``errors``)."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    found: list[str] = []
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list):
            for err in errors:
                if isinstance(err, dict):
                    found += [str(err[k]) for k in ("title", "detail", "message")
                              if err.get(k)]
                elif err:
                    found.append(str(err))
        elif isinstance(errors, dict):
            found += [f"{k}: {v}" for k, v in errors.items()]
        for key in ("message", "detail", "errorMessage"):
            if isinstance(data.get(key), str) and data[key]:
                found.append(data[key])
        messages = data.get("errorMessages")
        if isinstance(messages, list):
            found += [str(m) for m in messages if m]
        if not found and isinstance(data.get("reason"), str):
            found.append(data["reason"])
    elif resp.status_code == 400 and "html" not in resp.headers.get("Content-Type", ""):
        found.append(resp.text)
    unique = list(dict.fromkeys(f.strip() for f in found if f and f.strip()))
    text = re.sub(r"\s+", " ", "; ".join(unique)).strip()
    return text[:_MAX_SERVER_TEXT] + ("…" if len(text) > _MAX_SERVER_TEXT else "")


def client_from_settings(settings: Settings) -> ConfluenceClient:
    """The client for the site and credentials the settings name (CONFLUENCE_*)."""
    return make_client(
        settings.get("CONFLUENCE_BASE_URL"), api=settings.confluence_api,
        user=settings.get("CONFLUENCE_USER"), api_token=settings.get("CONFLUENCE_API_TOKEN"),
        pat=settings.get("CONFLUENCE_PAT"),
    )


def make_client(base_url: str | None, *, api: str = "auto", user: str | None = None,
                api_token: str | None = None, pat: str | None = None, timeout: float = 30.0,
                retries: int = 4, backoff: float = 0.5,
                max_retry_after: float = 30.0) -> ConfluenceClient:
    """A client for Confluence Cloud (REST v2) or Data Center (REST v1).

    :param base_url: CONFLUENCE_BASE_URL, e.g. ``https://example.atlassian.net/wiki`` (Cloud;
        ``/wiki`` is added when missing) or ``https://wiki.example.com/confluence`` (DC)
    :param api: ``cloud``, ``datacenter`` or ``auto`` (Cloud for ``*.atlassian.net``)
    :param user: CONFLUENCE_USER, the account e-mail (Cloud) or user name (DC basic auth)
    :param api_token: CONFLUENCE_API_TOKEN (Cloud API token; DC: the password)
    :param pat: CONFLUENCE_PAT, a Data Center personal access token (sent as bearer)
    :param timeout: seconds allowed for each request (connect and each read)
    :param retries: how many times a 429/5xx answer to a read (429 to a write) or a
        connection failure is retried
    :param backoff: urllib3 backoff factor between retries, in seconds
    :param max_retry_after: the longest ``Retry-After`` wait honoured, in seconds
    :raises ConfluenceError: bad address, unknown api, or missing credentials (naming them)
    """
    url = _base_url(base_url)
    host = (urlsplit(url).hostname or "").lower()
    flavour = _resolve_api(api, host)
    if flavour == "cloud" and is_cloud_host(host) and not urlsplit(url).path:
        url += "/wiki"
    secrets: list[str] = []
    auth: requests.auth.AuthBase
    if flavour == "datacenter" and pat:
        auth = _Bearer(pat)
        secrets.append(pat)
    elif user and api_token:
        auth = requests.auth.HTTPBasicAuth(user, api_token)
        secrets += [api_token, base64.b64encode(f"{user}:{api_token}".encode()).decode()]
    elif flavour == "cloud":
        raise ConfluenceError("Confluence Cloud needs CONFLUENCE_USER (the account e-mail) and "
                              "CONFLUENCE_API_TOKEN")
    else:
        raise ConfluenceError("Confluence Data Center needs CONFLUENCE_PAT (or CONFLUENCE_USER "
                              "and CONFLUENCE_API_TOKEN)")
    api_impl = _CloudApi() if flavour == "cloud" else _DataCenterApi()
    return ConfluenceClient(url, api_impl, auth, secrets, timeout=timeout, retries=retries,
                            backoff=backoff, max_retry_after=max_retry_after)


# ---------------------------------------------------------------------------- operations
Known = Collection[tuple[str, str]] | storage_format.KnownKeys
"""The keys of the items the tool knows (see ``storage_format.update_table``)."""

Apply = Callable[[str], tuple[str, bool, str]]
"""A page edit: the body read -> ``(new_body, changed, summary)`` (see
``storage_format.update_table`` / ``storage_page.replace_table``)."""


def update_page(client: ConfluenceClient, page_id: str | int, apply: Apply, *,
                max_attempts: int = 3, note: str = "", page: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    """Read a page, ``apply`` an edit to its body and write it back when it changed.

    One read, and one write only when ``apply`` reports a change. A 409 (the page was saved
    meanwhile) re-reads the page and re-applies the edit to the fresh body, so the other edit
    survives; a 5xx/timeout on the write re-reads the page and counts the write as done when
    the version moved on and the edit finds nothing more to change. At most ``max_attempts``
    writes are tried. Used for the to-do table (:func:`update_todo_table`) and for any other
    table kept on a page, e.g. ``update_page(client, pid, storage_page.table_edit(...))``.
    ``page``: the page as ``client.get_page`` read it a moment ago, instead of the first read
    (should it have changed since, the write meets a 409 and the page is read again).

    :returns: ``{"changed": bool, "version": int, "summary": str, "requests": int}``
    :raises ConfluenceError: the page cannot be read, parsed safely or written
    """
    page_id = str(page_id).strip()
    first = client.request_count

    def result(changed: bool, version: int, summary: str) -> dict[str, Any]:
        return {"changed": changed, "version": version, "summary": summary,
                "requests": client.request_count - first}

    if page is None:
        page = client.get_page(page_id)
    attempts = 0
    while True:
        new_body, changed, summary = apply(page["body"])
        if not changed:
            return result(False, page["version"], summary)
        if attempts >= max_attempts:
            raise ConfluenceError(f"page {page_id} kept changing while sre-tracker updated it "
                                  f"({attempts} attempts); run the command again")
        attempts += 1
        target = page["version"] + 1
        try:
            saved = client.put_page(page_id, page["title"], new_body, target,
                                    MESSAGE_PREFIX + summary + note)
            return result(True, saved["version"], summary)
        except VersionConflict:
            log.info("page %s changed meanwhile (409); re-reading and re-applying", page_id)
            page = client.get_page(page_id)
        except WriteOutcomeUnknown as exc:
            log.warning("%s; reading page %s again to see whether it was saved", exc, page_id)
            try:
                page = client.get_page(page_id)
            except ConfluenceError as again:
                raise ConfluenceError(f"{exc}; the update may or may not have been saved, and "
                                      f"reading the page again failed ({again}); run the "
                                      "command again") from again
            if page["version"] >= target and not apply(page["body"])[1]:
                log.info("the update of page %s had been saved (version %s)", page_id,
                         page["version"])
                return result(True, page["version"], summary)


def update_todo_table(client: ConfluenceClient, page_id: str | int, title: str,
                      rows: Iterable[Mapping[str, object]],
                      known: Known | None = None, *,
                      max_attempts: int = 3) -> dict[str, Any]:
    """Bring the to-do table under heading ``title`` on a page up to date
    (:func:`update_page` with ``storage_format.update_table``; ``known`` as there).

    :returns: ``{"changed": bool, "version": int, "summary": str, "requests": int}``
    :raises ConfluenceError: the page cannot be read, parsed safely or written
    """
    rows = list(rows)
    return update_page(
        client, page_id, lambda body: storage_format.update_table(body, title, rows, known),
        max_attempts=max_attempts)


def update_part_page(client: ConfluenceClient, page_id: str, title: str, fingerprint: str,
                     rows: Callable[[], Sequence[Mapping[str, object]]],
                     known: Known, memo: dict[str, list],
                     head: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:func:`update_todo_table` for a child page of a split list, skipping the read of a
    page that is as the tool left it with the same rows.

    Reading, parsing and comparing a page of thousands of rows takes seconds; a list of many
    pages changes a few at a time. Each write puts ``fingerprint`` (of the rows,
    ``storage_format.rows_fingerprint``) at the end of its version message, and ``memo``
    (page id -> [version, fingerprint], kept by the caller) remembers the version the tool
    last wrote, created or found up to date. The page's current version and its message
    (``head``, as ``client.child_pages(..., versions=True)`` lists them, else one small read)
    then tell whether the page is unchanged since, and the rows too: nothing to do.
    Otherwise (someone edited the page, or the rows changed) the page is updated as any
    other, with the table ``rows()`` (made only then).

    :returns: as :func:`update_page`
    """
    note = f" [{fingerprint}]"
    first = client.request_count
    if head is None or not isinstance(head.get("version"), int):
        head = client.page_version(page_id)
    if head["message"].endswith(note) or memo.get(page_id) == [head["version"], fingerprint]:
        memo[page_id] = [head["version"], fingerprint]
        return {"changed": False, "version": head["version"], "summary": "no changes",
                "requests": client.request_count - first}
    table = list(rows())
    result = update_page(
        client, page_id, lambda body: storage_format.update_table(body, title, table, known),
        note=note)
    memo[page_id] = [result["version"], fingerprint]
    return result


def check_page(client: ConfluenceClient, page_id: str | int, title: str) -> str:
    """For ``check``: one line on the page and the table, or ``ConfluenceError``."""
    page_id = str(page_id).strip()
    user = client.current_user()
    if user is not None and str(user.get("type", "")).lower() == "anonymous":
        raise ConfluenceError(ANONYMOUS)
    page = client.get_page(page_id)
    info = storage_format.inspect_page(page["body"], title)
    where = f"page '{page['title']}' v{page['version']}"
    if info.table:
        return f"{where}, table '{title}' with {info.rows} row{'' if info.rows == 1 else 's'}"
    parts = _index_rows(page["body"], title) if info.heading else None
    if parts is not None:
        return (f"{where}, index of the split to-do list under '{title}': {parts} "
                f"part{'' if parts == 1 else 's'} on child pages")
    if info.heading:
        return f"{where}, heading '{title}' has no table yet: the table will be added under it"
    return f"{where}, heading '{title}' not found: the table will be appended"


def _index_rows(body: str, title: str) -> int | None:
    """The rows of a split list's index under ``title`` (see ``todo_parts``), or None."""
    from sre_maturity.render import storage_page, todo_parts
    found = storage_page.locate(storage_page.load(body), title, todo_parts.INDEX_IS_OURS)
    if found.table is None:
        return None
    return sum(1 for _tr in found.table.iter("{*}tr")) - 1
