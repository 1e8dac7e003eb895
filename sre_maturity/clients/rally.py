"""A thin client for the Rally Web Services API v2.0 (WSAPI): the few calls sre-tracker makes.

Every method returns plain data (dicts and lists) and raises ``RallyError`` with one line that
says what failed and which setting to fix. The API key travels only in the ``ZSESSIONID`` header
and never appears in a message or a log record. Facts about the API and the section numbers in
comments come from ``reference/rally.md``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ReadTimeoutError, ResponseError

import config
from sre_maturity.clients.http_retry import RETRY_STATUSES, CappedRetry, mount_retries
from sre_maturity.support.errors import OutcomeUnknown, RallyError

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger("sre_tracker.rally")

API_PATH = "/slm/webservice/v2.0"
MAX_PAGESIZE = 2000  # WSAPI v2.0 maximum (§2.1)
CREATED_FIELDS = "ObjectID,FormattedID,Name"
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_ENVELOPE_META = ("Errors", "Warnings", "_rallyAPIMajor", "_rallyAPIMinor")


def quote_query_value(value: str) -> str:
    """Quote a value for the right-hand side of a WSAPI query term: ``"..."``.

    Always quoting is safe (bare words are optional, §2.1) and keeps spaces and parentheses in
    the value from ending the term; ``\\`` and ``"`` are backslash-escaped.
    """
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def short_ref(ref: str) -> str:
    """``/type/oid`` from any of the three ref forms Rally uses (full URL, ``/t/1``, ``t/1``)."""
    text = str(ref).strip()
    if API_PATH in text:
        text = text.split(API_PATH, 1)[1]
    text = text.split("?", 1)[0]
    if text.endswith(".js"):
        text = text[:-3]
    return "/" + text.strip("/")


def _oid_of(ref: str) -> int | None:
    tail = short_ref(ref).rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _site_url(base_url: str) -> str:
    """The site address (``https://rally1.rallydev.com``), also when given with the API path."""
    url = str(base_url).strip().rstrip("/")
    if url.endswith(API_PATH):
        url = url[: -len(API_PATH)]
    return url


def story_url(base_url: str, project_id: str | int, object_id: str | int) -> str:
    """The web page of a story: ``<site>/#/<projectOID>/detail/userstory/<storyOID>`` (§7)."""
    return f"{_site_url(base_url)}/#/{project_id}/detail/userstory/{object_id}"


def client_from_settings(settings: Settings) -> RallyClient:
    """The client for the workspace and project the settings name (RALLY_*)."""
    from config import __version__

    return RallyClient(
        settings.text("RALLY_BASE_URL"), settings.text("RALLY_API_KEY"),
        settings.text("RALLY_WORKSPACE_ID"), settings.text("RALLY_PROJECT_ID"), version=__version__,
    )


def _plain(obj: dict) -> dict:
    """A WSAPI object without the envelope fields, its ``_ref`` shortened to ``/type/oid``."""
    out = {k: v for k, v in obj.items() if k not in _ENVELOPE_META}
    if isinstance(out.get("_ref"), str):
        out["_ref"] = short_ref(out["_ref"])
    return out


def _created(obj: dict) -> dict:
    out = _plain(obj)
    if out.get("ObjectID") is None and out.get("_ref"):
        out["ObjectID"] = _oid_of(out["_ref"])
    return out


def _creates(url: str | None) -> bool:
    """True for the calls that make new objects (``.../create``, ``/batch``)."""
    path = urlsplit(url or "").path.rstrip("/")
    return path.endswith("/create") or path.endswith("/batch")


class _RallyRetry(CappedRetry):
    """Never repeats a write whose outcome is unknown (it may have been applied)."""

    def increment(self, method: str | None = None, url: str | None = None, response: Any = None,
                  error: Exception | None = None, _pool: Any = None, _stacktrace: Any = None
                  ) -> _RallyRetry:
        # A POST that timed out or lost its connection after being sent may have been applied
        # (a batch of creates): repeating it would duplicate stories, so it is never retried.
        if (error is not None and method is not None and method.upper() not in _IDEMPOTENT
                and self._is_read_error(error)):
            raise error.with_traceback(_stacktrace)
        # A 5xx to a create may come from a gateway after Rally made the stories; only 429,
        # which Rally sends before doing anything, is retried. The caller looks the rest up.
        if (response is not None and _creates(url) and method is not None
                and method.upper() not in _IDEMPOTENT and response.status != 429):
            raise MaxRetryError(_pool, url or "", ResponseError(
                f"HTTP {response.status} to a create is not retried"))
        return super().increment(method, url, response=response, error=error, _pool=_pool,
                                 _stacktrace=_stacktrace)


class RallyClient:
    """One authenticated session against one Rally workspace and project.

    :param base_url: site address, e.g. ``https://rally1.rallydev.com`` (RALLY_BASE_URL)
    :param api_key: API key, sent only as the ``ZSESSIONID`` header (RALLY_API_KEY)
    :param workspace_id: ObjectID of the workspace (RALLY_WORKSPACE_ID)
    :param project_id: ObjectID of the project stories go to (RALLY_PROJECT_ID)
    :param timeout: seconds allowed for each request (connect and each read)
    :param retries: how many times a 429/5xx answer or a connection failure is retried
    :param backoff: urllib3 backoff factor between retries, in seconds
    :param max_retry_after: the longest ``Retry-After`` wait honoured, in seconds
    :param version: sre-tracker version, sent in the integration headers
    """

    def __init__(self, base_url: str, api_key: str, workspace_id: str | int,
                 project_id: str | int, *, timeout: float = 30.0, retries: int = 4,
                 backoff: float = 0.5, max_retry_after: float = 30.0,
                 version: str = "0.1.0") -> None:
        self.base_url = _site_url(base_url)
        self.api_url = self.base_url + API_PATH
        self.host = urlsplit(self.base_url).netloc or self.base_url
        self.workspace_id = str(workspace_id).strip()
        self.project_id = str(project_id).strip()
        self.workspace_ref = f"/workspace/{self.workspace_id}"
        self.project_ref = f"/project/{self.project_id}"
        self.timeout = timeout
        self.retries = retries
        self.request_count = 0  # HTTP exchanges seen by requests (urllib3 retries not counted)
        config.remember_secret(api_key)
        self.session = self._make_session(api_key, version, retries, backoff, max_retry_after)

    def __repr__(self) -> str:
        return f"RallyClient({self.base_url!r}, workspace={self.workspace_id})"

    def __enter__(self) -> RallyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session and its connections."""
        self.session.close()

    # --- transport ---------------------------------------------------------------------------

    def _make_session(self, api_key: str, version: str, retries: int, backoff: float,
                      max_retry_after: float) -> requests.Session:
        session = requests.Session()
        # trust_env stays True: REQUESTS_CA_BUNDLE and proxy variables keep working.
        session.headers.update({
            "ZSESSIONID": api_key,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-RallyIntegrationName": "sre-tracker",
            "X-RallyIntegrationVendor": "sre-tracker",
            "X-RallyIntegrationVersion": version,
            "X-RallyIntegrationLibrary": "requests",
        })
        # POST is allowed so that a 429 to a create, and 429/5xx to an update, are retried;
        # _RallyRetry keeps every other failed create from being sent twice.
        mount_retries(session, retries=retries, backoff=backoff, max_retry_after=max_retry_after,
                      allowed_methods=frozenset({"GET", "POST", "PUT", "DELETE"}),
                      retry_class=_RallyRetry)
        session.hooks["response"].append(self._on_response)
        return session

    def _on_response(self, resp: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.request_count += 1
        log.debug("%s %s -> HTTP %s (%.0f ms)", resp.request.method, urlsplit(resp.url).path,
                  resp.status_code, resp.elapsed.total_seconds() * 1000)

    def _error(self, message: str) -> RallyError:
        # Server texts are quoted in messages; make sure none can carry a key back to us
        # (this client's, or another service's the server echoes).
        return RallyError(config.mask_secrets(message))

    def _request(self, method: str, path: str, *, params: dict | None = None,
                 body: Any = None) -> requests.Response:
        try:
            # No redirects: requests would forward the ZSESSIONID header to another host.
            return self.session.request(method, self.api_url + path, params=params, json=body,
                                        timeout=self.timeout, allow_redirects=False)
        except requests.exceptions.SSLError as exc:
            raise self._error(
                f"TLS verification of {self.host} failed; if your network uses its own "
                "certificate authority, set REQUESTS_CA_BUNDLE to its bundle file") from exc
        except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as exc:
            error = self._error(self._transport_message(exc, method, path))
            if method not in _IDEMPOTENT and _creates(path) and _was_sent(exc):
                raise OutcomeUnknown(str(error)) from exc
            raise error from exc
        except requests.exceptions.RequestException as exc:
            raise self._error(f"request to Rally at {self.host} failed "
                              f"({type(exc).__name__}); check RALLY_BASE_URL") from exc

    def _transport_message(self, exc: Exception, method: str, path: str) -> str:
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)  # MaxRetryError wraps the last failure
        may_exist = ("" if method in _IDEMPOTENT else
                     "; the change may still have been made (a re-run finds it)")
        if isinstance(exc, requests.exceptions.ReadTimeout) or isinstance(
                reason, ReadTimeoutError):
            attempts = self.retries + 1 if method in _IDEMPOTENT else 1
            return (f"Rally at {self.host} did not answer {method} {path} within "
                    f"{self.timeout:g} s ({attempts} attempt{'s' if attempts != 1 else ''})"
                    f"{may_exist}; try again later")
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return (f"cannot reach Rally at {self.host} (connection timed out); check "
                    "RALLY_BASE_URL and the network or proxy")
        if isinstance(reason, NewConnectionError):
            return (f"cannot reach Rally at {self.host} (connection failed); check "
                    "RALLY_BASE_URL and the network or proxy")
        return (f"the connection to Rally at {self.host} failed during {method} {path}"
                f"{may_exist}; try again later")

    def _check(self, resp: requests.Response, what: str, fix: str, *,
               raise_errors: bool = True) -> dict:
        """The object inside the JSON envelope, after checking status and ``Errors`` (§6)."""
        status = resp.status_code
        method = resp.request.method or "GET"
        path = urlsplit(resp.url).path.split(API_PATH, 1)[-1]
        if status == 401:
            hint = "" if method == "GET" else "; a read-only key cannot create or change stories"
            raise self._error(f"Rally rejected the API key (check RALLY_API_KEY{hint})")
        if status == 403:
            text = _page_text(resp)
            found = re.search(r"Your IP address.*?configured\.", text)
            if found:
                raise self._error(f"Rally refused this machine: {found.group(0)} Ask the "
                                  "subscription administrator, or use sync --from-csv")
            raise self._error(f"Rally denied access to {what} (HTTP 403); check that the user "
                              f"of RALLY_API_KEY may see it and {fix}")
        if status == 404:
            raise self._error(f"Rally found no {what} (HTTP 404 for {method} {path}); "
                              f"check {fix}")
        if 300 <= status < 400:
            target = urlsplit(resp.headers.get("Location", "")).netloc or "another address"
            raise self._error(f"Rally at {self.host} redirected {method} {path} to {target}; "
                              "set RALLY_BASE_URL to the site address, e.g. "
                              "https://rally1.rallydev.com")
        if status in RETRY_STATUSES:
            retries = getattr(resp.raw, "retries", None)
            attempts = len(retries.history) + 1 if retries is not None else 1
            error = self._error(f"Rally is unavailable (HTTP {status} after {attempts} "
                                f"attempt{'s' if attempts != 1 else ''}); try again later")
            if status >= 500 and method not in _IDEMPOTENT and _creates(path):
                raise OutcomeUnknown(str(error))
            raise error
        try:
            data = resp.json()
        except ValueError:
            data = None
        inner = _envelope(data)
        if status >= 400:
            detail = "; ".join(str(e) for e in (inner or {}).get("Errors") or [])
            raise self._error(f"Rally refused {what} (HTTP {status})"
                              + (f": {detail}" if detail else f"; check {fix}"))
        if inner is None:
            kind = resp.headers.get("Content-Type", "no content type").split(";")[0]
            error = self._error(f"Rally sent a reply that is not WSAPI JSON for {method} {path} "
                                f"(HTTP {status}, {kind}); check RALLY_BASE_URL or try again "
                                "later")
            if method not in _IDEMPOTENT and _creates(path):
                # A create answered 2xx with a body nobody can read (cut short, a proxy's
                # page): Rally may well have made the stories, so they are looked up.
                raise OutcomeUnknown(str(error))
            raise error
        if inner.get("Warnings"):
            log.debug("Rally warnings for %s %s: %s", method, path, inner["Warnings"])
        errors = [str(e) for e in inner.get("Errors") or []]
        if errors and raise_errors:
            raise self._errors_error(errors, what, fix)
        return inner

    def _errors_error(self, errors: list[str], what: str, fix: str) -> RallyError:
        text = "; ".join(errors)
        if any("Cannot find object to read" in e or "Could not read" in e for e in errors):
            return self._error(f"Rally found no {what} ({text}); check {fix}")
        if any("Not authorized" in e for e in errors):
            return self._error(f"Rally refused {what}: {text} (check RALLY_API_KEY and the "
                               "permissions of its user)")
        return self._error(f"Rally refused {what}: {text}")

    def _call(self, method: str, path: str, *, what: str, fix: str, params: dict | None = None,
              body: Any = None) -> dict:
        return self._check(self._request(method, path, params=params, body=body), what, fix)

    # --- reads -------------------------------------------------------------------------------

    def current_user(self) -> dict:
        """The user the API key belongs to (one request: the cheap authentication check)."""
        user = self._call("GET", "/user", params={"fetch": "UserName,DisplayName"},
                          what="current user", fix="RALLY_API_KEY")
        return {"UserName": user.get("UserName"), "DisplayName": user.get("DisplayName")}

    def get_workspace(self) -> dict:
        """The workspace of RALLY_WORKSPACE_ID (``Name``, ``ObjectID``, ``_ref``)."""
        fix = "RALLY_WORKSPACE_ID (the ObjectID of the workspace)"
        obj = self._call("GET", self.workspace_ref, params={"fetch": "ObjectID,Name"},
                         what=f"workspace {self.workspace_id}", fix=fix)
        return _plain(obj)

    def get_project(self) -> dict:
        """The project of RALLY_PROJECT_ID; refuses one that lies in another workspace."""
        fix = "RALLY_PROJECT_ID (the ObjectID of the project)"
        obj = _plain(self._call("GET", self.project_ref,
                                params={"fetch": "ObjectID,Name,Workspace"},
                                what=f"project {self.project_id}", fix=fix))
        ws = obj.get("Workspace")
        ws_ref = ws.get("_ref") if isinstance(ws, dict) else ws
        if ws_ref and str(_oid_of(ws_ref)) != self.workspace_id:
            raise self._error(f"project {self.project_id} is not in workspace "
                              f"{self.workspace_id}; check RALLY_PROJECT_ID and "
                              "RALLY_WORKSPACE_ID")
        return obj

    def query(self, type_path: str, query: str | None, fields: Iterable[str], *,
              order: str = "ObjectID", scope: str | None = None,
              pagesize: int = MAX_PAGESIZE, what: str | None = None,
              fix: str = "the Rally settings") -> list[dict]:
        """Every object of ``type_path`` matching ``query``, fetched page by page.

        :param scope: ``"project"`` (RALLY_PROJECT_ID and its children), ``"workspace"``
            (``project=null``: the whole workspace) or None (no project parameter)
        :returns: the result objects in ``order``; ceil(N / pagesize) requests, at least one
        """
        params: dict[str, Any] = {"workspace": self.workspace_ref, "fetch": ",".join(fields),
                                  "order": order, "pagesize": pagesize}
        if query:
            params["query"] = query
        if scope == "project":
            params.update(project=self.project_ref, projectScopeDown="true",
                          projectScopeUp="false")
        elif scope == "workspace":
            params["project"] = "null"
        what = what or f"{type_path} query"
        out: list[dict] = []
        start = 1
        while True:
            params["start"] = start
            page = self._call("GET", f"/{type_path}", params=params, what=what, fix=fix)
            results = page.get("Results") or []
            out.extend(_plain(r) for r in results if isinstance(r, dict))
            total = int(page.get("TotalResultCount") or 0)
            if not results or len(out) >= total:
                return out
            # start is 1-based; advancing by what came back also survives a server that
            # clamps pagesize below what was asked.
            start += len(results)

    def resolve_parent(self, formatted_id: str) -> dict:
        """The feature with this FormattedID: ``_ref`` (``/portfolioitem/feature/<oid>``),
        ``ObjectID``, ``FormattedID``, ``Name``."""
        fid = formatted_id.strip().upper()
        fix = "RALLY_PARENT_ID (the FormattedID of a feature, e.g. F1234) and RALLY_WORKSPACE_ID"
        rows = self.query("portfolioitem/feature", f"(FormattedID = {quote_query_value(fid)})",
                          ["ObjectID", "FormattedID", "Name"], scope="workspace", pagesize=20,
                          what=f"feature {fid}", fix=fix)
        if not rows:
            raise self._error(f"Rally has no feature {fid} in workspace {self.workspace_id}; "
                              f"check {fix}")
        row = rows[0]
        ref = short_ref(row["_ref"]) if row.get("_ref") else (
            f"/portfolioitem/feature/{row.get('ObjectID')}")
        return {"_ref": ref, "ObjectID": row.get("ObjectID") or _oid_of(ref),
                "FormattedID": row.get("FormattedID", fid), "Name": row.get("Name", "")}

    def find_tag(self, name: str) -> str | None:
        """The ref (``/tag/<oid>``) of the tag called ``name``, or None."""
        # Tags belong to the workspace, not to a project (§1), so no project scoping.
        rows = self.query("tag", f"(Name = {quote_query_value(name)})",
                          ["ObjectID", "Name", "Archived"], what=f"tag {name}",
                          fix="RALLY_TAG")
        if not rows:
            return None
        rows.sort(key=lambda r: (r.get("Name") != name, bool(r.get("Archived"))))
        row = rows[0]
        return short_ref(row["_ref"]) if row.get("_ref") else f"/tag/{row['ObjectID']}"

    def ensure_tag(self, name: str) -> str:
        """The ref of the tag called ``name``, creating the tag when it does not exist."""
        found = self.find_tag(name)
        if found:
            return found
        result = self._call("POST", "/tag/create",
                            params={"workspace": self.workspace_ref, "fetch": "ObjectID,Name"},
                            body={"Tag": {"Name": name, "Workspace": self.workspace_ref}},
                            what=f"creation of tag {name}", fix="RALLY_TAG")
        obj = result.get("Object") or {}
        log.info("created Rally tag %s", name)
        return short_ref(obj["_ref"]) if obj.get("_ref") else f"/tag/{obj.get('ObjectID')}"

    def fetch_stories(self, tag: str, parent_ref: str | None,
                      fields: list[str]) -> list[dict]:
        """Every story tagged ``tag`` (and under the feature ``parent_ref``), in ObjectID order.

        One server-side filtered query, only ``fields`` (plus ObjectID and FormattedID) fetched,
        pages of 2000: N stories take max(1, ceil(N / 2000)) requests.
        """
        term = f"(Tags.Name = {quote_query_value(tag)})"
        if parent_ref:
            # Only binary AND exists: (A) AND (B) must itself be wrapped in parentheses.
            term = f"({term} AND (PortfolioItem = {quote_query_value(short_ref(parent_ref))}))"
        wanted = list(dict.fromkeys(["ObjectID", "FormattedID", *fields]))
        return self.query("hierarchicalrequirement", term, wanted, scope="project",
                          what=f"stories tagged {tag}",
                          fix="RALLY_TAG, RALLY_PARENT_ID and RALLY_PROJECT_ID")

    # --- writes ------------------------------------------------------------------------------

    def create_stories(self, stories: list[dict], *, chunk_size: int = 100,
                       on_created: Callable[[int, dict], None] | None = None,
                       find_existing: Callable[[list[int]], dict[int, dict]] | None = None,
                       on_chunk: Callable[[list[tuple[int, dict]]], None] | None = None,
                       ) -> list[dict]:
        """Create user stories, through the batch endpoint where Rally allows it.

        ``on_created(index, object)`` is called for each story as soon as its chunk returns,
        and ``on_chunk([(index, object), ...])`` once per chunk with the stories it created or
        adopted, so the caller can store the ids (in one transaction) before anything else can
        fail.

        A create whose outcome is unknown (timeout, connection lost or a 5xx after the request
        was sent) is never sent again blindly: ``find_existing(indices)`` looks those stories
        up in Rally (by the item key in their Notes) and returns the ones that exist by index;
        they are adopted (``on_created`` is called, the result says ``"adopted": True``) and
        only the missing ones are created again, at most ``retries`` times.

        :param stories: field dicts (``Name``, ``Notes``, ``Project``, ``PortfolioItem``,
            ``Tags`` as ``[{"_ref": ...}]``, ...)
        :returns: one entry per input story, in order: ``{"ok": True, "object": {...}}`` or
            ``{"ok": False, "error": "..."}``; after a transport failure the rest are
            ``not attempted`` and a re-run finishes them
        """
        results: list[dict | None] = [None] * len(stories)
        returned: list[tuple[int, dict]] = []

        def done(index: int, obj: dict | None, error: str | None, adopted: bool = False) -> None:
            if obj is not None and not error:
                results[index] = {"ok": True, "object": obj, "adopted": adopted}
                returned.append((index, obj))
                if on_created is not None:
                    on_created(index, obj)
            else:
                results[index] = {"ok": False, "error": error or "Rally returned no object"}

        def chunk_done() -> None:
            if returned and on_chunk is not None:
                on_chunk(list(returned))
            returned.clear()

        size = max(1, chunk_size)
        queue = [list(range(n, min(n + size, len(stories))))
                 for n in range(0, len(stories), size)]
        use_batch = True
        lookups = 0
        while queue:
            chunk = queue.pop(0)
            try:
                if use_batch:
                    outcome = self._create_batch([stories[k] for k in chunk], chunk[0])
                    if outcome is None:
                        # One by one from here on: this chunk and every queued one.
                        use_batch = False
                        queue = [[k] for waiting in (chunk, *queue) for k in waiting]
                        continue
                    for k, (obj, error) in zip(chunk, outcome, strict=True):
                        done(k, obj, error)
                else:
                    done(chunk[0], *self._create_one(stories[chunk[0]], chunk[0]))
            except OutcomeUnknown as exc:
                if find_existing is None or lookups >= self.retries:
                    self._give_up(results, chunk, queue, f"{exc}; outcome unknown, a re-run "
                                  "looks these stories up before creating any")
                    break
                lookups += 1
                log.info("outcome of %d create(s) unknown (%s); looking them up", len(chunk), exc)
                try:
                    found = find_existing(chunk)
                except RallyError as lookup_error:
                    self._give_up(results, chunk, queue, f"{exc}; looking the stories up "
                                  f"failed too ({lookup_error}); a re-run finishes them")
                    break
                for k in chunk:
                    if k in found:
                        done(k, found[k], None, adopted=True)
                missing = [k for k in chunk if k not in found]
                if missing:
                    queue.insert(0, missing)
            except RallyError as exc:
                self._give_up(results, chunk, queue, str(exc))
                break
            finally:
                chunk_done()
        return [r or {"ok": False, "error": "not attempted"} for r in results]

    @staticmethod
    def _give_up(results: list[dict | None], chunk: list[int], queue: list[list[int]],
                 reason: str) -> None:
        """The chunk in flight fails with ``reason``; the queued ones were not attempted."""
        for k in chunk:
            if results[k] is None:
                results[k] = {"ok": False, "error": reason}
        for waiting in queue:
            for k in waiting:
                if results[k] is None:
                    results[k] = {"ok": False, "error": f"not attempted: {reason}"}

    def _create_params(self) -> dict:
        return {"workspace": self.workspace_ref, "fetch": CREATED_FIELDS}

    def _create_batch(self, chunk: list[dict], first: int
                      ) -> list[tuple[dict | None, str | None]] | None:
        """Outcome per entry of one ``/batch`` call, or None when Rally refuses batches."""
        body = {"Batch": [{"Entry": {"Path": "/hierarchicalrequirement/create", "Method": "POST",
                                     "Body": {"HierarchicalRequirement": fields}}}
                          for fields in chunk]}
        what = f"creation of stories {first + 1}-{first + len(chunk)}"
        resp = self._request("POST", "/batch", params=self._create_params(), body=body)
        if resp.status_code in (404, 405, 501):
            log.info("Rally refused the batch endpoint (HTTP %s); creating stories one by one",
                     resp.status_code)
            return None
        result = self._check(resp, what, "RALLY_PROJECT_ID and RALLY_PARENT_ID",
                             raise_errors=False)
        errors = [str(e) for e in result.get("Errors") or []]
        entries = result.get("Results") or []
        if errors and not entries:
            if any("Not authorized" in e for e in errors):
                raise self._errors_error(errors, what, "RALLY_API_KEY")
            # Unsupported, too many entries, ...: nothing was created, so singles are safe.
            log.info("Rally refused the batch (%s); creating stories one by one",
                     "; ".join(errors))
            return None
        outcome: list[tuple[dict | None, str | None]] = []
        for n in range(len(chunk)):
            entry = _entry_result(entries[n]) if n < len(entries) else None
            if entry is None:
                outcome.append((None, "Rally returned no result for this story"))
            elif entry.get("Errors"):
                outcome.append((None, "; ".join(str(e) for e in entry["Errors"])))
            elif isinstance(entry.get("Object"), dict):
                outcome.append((_created(entry["Object"]), None))
            else:
                outcome.append((None, "Rally returned no object for this story"))
        return outcome

    def _create_one(self, fields: dict, index: int) -> tuple[dict | None, str | None]:
        resp = self._request("POST", "/hierarchicalrequirement/create",
                             params=self._create_params(),
                             body={"HierarchicalRequirement": fields})
        result = self._check(resp, f"creation of story {index + 1}",
                             "RALLY_PROJECT_ID and RALLY_PARENT_ID", raise_errors=False)
        errors = [str(e) for e in result.get("Errors") or []]
        if any("Not authorized" in e for e in errors):
            raise self._errors_error(errors, f"creation of story {index + 1}", "RALLY_API_KEY")
        if errors:
            return None, "; ".join(errors)
        obj = result.get("Object")
        return (_created(obj), None) if isinstance(obj, dict) else (None, None)

    def update_story(self, object_id: str | int, fields: dict) -> dict:
        """Change fields of one story; returns the story with those fields as Rally has them."""
        fetch = ",".join(dict.fromkeys([*CREATED_FIELDS.split(","), *fields]))
        result = self._call("POST", f"/hierarchicalrequirement/{object_id}",
                            params={"workspace": self.workspace_ref, "fetch": fetch},
                            body={"HierarchicalRequirement": fields},
                            what=f"story {object_id}",
                            fix="that the story still exists in Rally")
        return _created(result.get("Object") or {})


def _was_sent(exc: Exception) -> bool:
    """False when the request never left (connection refused or not made in time)."""
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    return not (isinstance(exc, requests.exceptions.ConnectTimeout)
                or isinstance(reason, NewConnectionError))


def _envelope(data: Any) -> dict | None:
    """The object inside ``{"QueryResult": {...}}``, ``{"HierarchicalRequirement": {...}}``..."""
    if isinstance(data, dict) and len(data) == 1:
        inner = next(iter(data.values()))
        if isinstance(inner, dict):
            return inner
    return None


def _entry_result(entry: Any) -> dict | None:
    """One batch result ``{"Object", "Errors"}``, also when wrapped (``{"CreateResult": ...}``)."""
    if not isinstance(entry, dict):
        return None
    if "Object" not in entry and "Errors" not in entry:
        return _envelope(entry)
    return entry


def _page_text(resp: requests.Response) -> str:
    """The visible text of an error page, tags removed and white space collapsed."""
    text = re.sub(r"<[^>]+>", " ", resp.text or "")
    return re.sub(r"\s+", " ", text).strip()
