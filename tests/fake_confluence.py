"""A stateful fake of Confluence on 127.0.0.1 serving Cloud REST v2 and Data Center REST v1.

It follows ``reference/confluence.md`` (§1-§3, §8 checklist):

* Cloud (``/wiki`` prefix): ``GET/PUT /wiki/api/v2/pages/{id}`` (``body-format=storage``
  needed for a body), HTTP Basic with e-mail + API token, v2 error envelope
  ``{"errors": [{"status", "code", "title", "detail"}]}``, PUT requires
  ``id, status, title, body, version``; the removed v1 endpoint
  ``/wiki/rest/api/content/{id}`` answers 410 Gone.
* Data Center (site root, or ``context`` such as ``/confluence``): ``GET /rest/api/content/{id}``
  (``expand=body.storage,version``), ``PUT /rest/api/content/{id}`` with ``type``,
  ``version.number``, ``minorEdit``; ``GET /rest/api/user/current``; Bearer PAT (or Basic
  user/password); v1 error envelope ``{"statusCode", "data", "message", "reason"}``. A wrong PAT
  is not refused when ``anonymous_access`` is on: the request runs as anonymous
  (CONFSERVER-98199) and the page answers 404.

Both: ``version.number`` must be exactly current + 1 (else 409 "Version must be incremented on
update. Current version is: N"); a body that is not well-formed XHTML is refused with 400
"Error parsing xhtml: ..."; stored bodies are normalised the way Confluence does on save
(``normalise``), so a body read back differs in bytes from what was sent.

Usage::

    with FakeConfluence() as fake:
        pid = fake.add_page("SRE Weekly", "<p>hi</p>")
        client = confluence.make_client(fake.cloud_url, api="cloud", user=fake.email,
                                        api_token=fake.api_token)

Fault injection: ``fail_next`` (status, Retry-After, body, before auth), ``edit_before_put``
(a human saves the page between our GET and PUT -> 409), ``fail_after_put`` (the PUT is saved
but the answer is a 5xx or arrives too late: write outcome unknown), ``latency``.
Observation: ``requests`` (method, path, query, json body), ``count()``, ``pages`` (id ->
page dict with ``history``), ``auth_headers``.

Choices where the reference is unsure [U]: the v2 409 body uses ``"code": "CONFLICT"``; the
v2 PUT ignores ``minorEdit``; a version number above current + 1 is also a 409.
"""

from __future__ import annotations

import base64
import html.entities
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from lxml import etree

from fake_http import FakeServer, Reply

DEFAULT_EMAIL = "sre.bot@example.com"
DEFAULT_TOKEN = "ATATT3xFfGF0-fake-cloud-api-token-0123456789"
DEFAULT_PAT = "NjQ2MTk4fakeDataCenterPersonalAccessToken"
DEFAULT_DC_USER = "jdoe"
DEFAULT_DC_PASSWORD = "s3cret-DC-password"

V2_PAGE = re.compile(r"^/wiki/api/v2/pages/([^/]+)$")
V2_CHILDREN = re.compile(r"^/wiki/api/v2/pages/([^/]+)/(?:direct-)?children$")
V1_CHILDREN = re.compile(r"^/rest/api/content/([^/]+)/child/page$")
SPACE_ID, SPACE_KEY = "98310", "SRE"
CLOUD_V1 = re.compile(r"^/wiki/rest/api/content/([^/]+)$")
GONE_TEXT = "This deprecated endpoint has been removed"
NS = {"ac": "http://www.atlassian.com/schema/confluence/4/ac/",
      "ri": "http://www.atlassian.com/schema/confluence/4/ri/",
      "at": "http://www.atlassian.com/schema/confluence/4/at/"}

HTML_502 = """<html><head><title>502 Bad Gateway</title></head>
<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>
"""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + "000Z"


def _dtd() -> str:
    decls = []
    for name, value in html.entities.html5.items():
        if name.endswith(";") and name[:-1] not in ("amp", "lt", "gt", "quot", "apos"):
            ref = "".join(f"&#38;#{ord(c)};" if c in "<&" else f"&#{ord(c)};" for c in value)
            decls.append(f'<!ENTITY {name[:-1]} "{ref}">')
    return "<!DOCTYPE root [\n" + "\n".join(decls) + "\n]>"


_ENTITIES = _dtd()
_ROOT_OPEN = "<root " + " ".join(f'xmlns:{p}="{u}"' for p, u in NS.items()) + ">"


def xhtml_error(body: str) -> str | None:
    """Confluence-style parse error for a storage body, or None when it is well-formed."""
    parser = etree.XMLParser(strip_cdata=False, resolve_entities=False, no_network=True,
                             load_dtd=False)
    try:
        etree.fromstring((_ENTITIES + _ROOT_OPEN + body + "</root>").encode("utf-8"), parser)
    except etree.XMLSyntaxError as exc:
        return f"Error parsing xhtml: {exc.msg}"
    return None


_OPAQUE = re.compile(r"<!\[CDATA\[.*?\]\]>|<!--.*?-->|<\?.*?\?>", re.S)
_STATUS_MACRO = re.compile(r'<ac:structured-macro ac:name="([^"<>]+)">')


def _self_closing(text: str) -> str:
    """``" />"`` at the end of a tag (not in text, where it may stand too) as ``"/>"``."""
    out, pos = [], 0
    at = text.find(" />")
    while at >= 0:
        opening = text.rfind("<", pos, at)
        if opening >= 0 and text.find(">", opening, at) < 0 and text[opening + 1] not in "!?":
            out += [text[pos:at], "/>"]
            pos = at + 3
        at = text.find(" />", at + 3)
    out.append(text[pos:])
    return "".join(out)


def normalise(body: str, flavour: str) -> str:
    """What Confluence does to a body on save (lexical only; the data stays): ``" />"`` becomes
    ``"/>"``, new status macros get ``ac:schema-version`` and an ``ac:macro-id``, new tables get
    Cloud's ``data-layout``/``ac:local-id`` or Data Center's ``class="wrapped"``. Only tags are
    rewritten: CDATA, comments and text are stored exactly as sent. (A few passes of regular
    expressions, not a call per tag: the benchmark's fake saves pages of 10^5 tags, and its time
    counts against the tool's.)"""

    def tags(text: str) -> str:
        text = _self_closing(text)
        text = _STATUS_MACRO.sub(lambda m: f'<ac:structured-macro ac:name="{m.group(1)}" '
                                 f'ac:schema-version="1" ac:macro-id="{uuid.uuid4()}">', text)
        if flavour == "cloud":
            return re.sub("<table>", lambda _m: f'<table data-layout="default" '
                          f'ac:local-id="{uuid.uuid4()}">', text)
        return text.replace("<table>", '<table class="wrapped">')

    out, pos = [], 0
    for m in _OPAQUE.finditer(body):
        out += [tags(body[pos:m.start()]), m.group(0)]
        pos = m.end()
    out.append(tags(body[pos:]))
    return "".join(out)


_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict", 410: "Gone", 413: "Payload Too Large",
            429: "Too Many Requests", 500: "Internal Server Error", 501: "Not Implemented",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
_V2_CODES = {400: "INVALID_REQUEST_PARAMETER", 401: "UNAUTHORIZED", 403: "PERMISSION_DENIED",
             404: "NOT_FOUND", 409: "CONFLICT", 410: "GONE", 429: "TOO_MANY_REQUESTS",
             500: "INTERNAL_SERVER_ERROR", 503: "SERVICE_UNAVAILABLE"}


def v1_error(status: int, message: str, headers: dict | None = None) -> Reply:
    """The v1 (Data Center, Cloud v1) error envelope."""
    return Reply(status, {
        "statusCode": status,
        "data": {"authorized": status not in (401, 403), "valid": status != 400,
                 "allowedInReadOnlyMode": True, "errors": [], "successful": False},
        "message": message, "reason": _REASONS.get(status, "Error")}, headers=headers)


def v2_error(status: int, title: str, detail: str | None = None,
             headers: dict | None = None) -> Reply:
    """The v2 (Cloud) error envelope."""
    return Reply(status, {"errors": [{"status": status, "code": _V2_CODES.get(status, "ERROR"),
                                       "title": title, "detail": detail}]}, headers=headers)


class FakeConfluence(FakeServer):
    """A Confluence server on 127.0.0.1 (port chosen by the OS) holding pages.

    ``cloud_url`` (``…/wiki``) is the CONFLUENCE_BASE_URL for ``api="cloud"``; ``dc_url``
    (``…`` + ``context``) the one for ``api="datacenter"``. Both serve the same page store.
    """

    def __init__(self, *, email: str = DEFAULT_EMAIL, api_token: str = DEFAULT_TOKEN,
                 pat: str = DEFAULT_PAT, dc_user: str = DEFAULT_DC_USER,
                 dc_password: str = DEFAULT_DC_PASSWORD, context: str = "",
                 latency: float = 0.0, anonymous_access: bool = False,
                 normalise_bodies: bool = True) -> None:
        super().__init__()
        self.email = email
        self.api_token = api_token
        self.pat = pat
        self.dc_user = dc_user
        self.dc_password = dc_password
        self.context = context.rstrip("/")
        self.latency = latency
        self.put_latency = 0.0
        self.anonymous_access = anonymous_access
        self.normalise_bodies = normalise_bodies
        self.forbidden: set[str] = set()  # page ids the user may view but not edit
        self.hidden: set[str] = set()  # page ids the user may not see (404, as Confluence)
        self.pages: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict, Any]] = []
        self.auth_headers: list[str] = []
        self.lock = threading.RLock()
        self._ids = itertools.count(4521987)
        self.page_limit = 250  # the most results one listing request returns
        self._faults: list[dict] = []
        self._edits: list[dict] = []
        self._after_put: list[dict] = []

    # --- life cycle ---

    @property
    def cloud_url(self) -> str:
        return self.url + "/wiki"

    @property
    def dc_url(self) -> str:
        return self.url + self.context

    def settings(self, flavour: str) -> dict[str, str]:
        """The CONFLUENCE_* settings (base URL, API, credentials) that reach this fake as
        ``flavour`` ("cloud" or "datacenter")."""
        if flavour == "cloud":
            return {"CONFLUENCE_BASE_URL": self.cloud_url, "CONFLUENCE_API": "cloud",
                    "CONFLUENCE_USER": self.email, "CONFLUENCE_API_TOKEN": self.api_token}
        return {"CONFLUENCE_BASE_URL": self.dc_url, "CONFLUENCE_API": "datacenter",
                "CONFLUENCE_PAT": self.pat}

    # --- pages ---

    def add_page(self, title: str, body: str, *, page_id: str | None = None,
                 version: int = 1, parent_id: str = "4519001", by: str = "seed") -> str:
        """Create a page directly (no HTTP); returns its id."""
        with self.lock:
            pid = page_id or str(next(self._ids))
            self.pages[pid] = {"id": pid, "title": title, "status": "current",
                               "spaceId": SPACE_ID, "parentId": parent_id,
                               "created_by": by, "version": version, "body": body,
                               "message": "", "minorEdit": False, "history": [
                                   {"number": version, "body": body, "message": "",
                                    "minorEdit": False, "by": "seed"}]}
            return pid

    def body(self, page_id: str) -> str:
        return self.pages[page_id]["body"]

    def children(self, page_id: str) -> list[dict[str, Any]]:
        """The pages whose parent is ``page_id``, in creation order."""
        with self.lock:
            return [p for p in self.pages.values() if p["parentId"] == page_id]

    def page_by_title(self, title: str) -> dict[str, Any] | None:
        with self.lock:
            return next((p for p in self.pages.values()
                         if p["title"].casefold() == title.casefold()), None)

    def creates(self) -> list[Any]:
        """The JSON bodies of all POST (create) requests, in order."""
        return [b for m, _p, _q, b in list(self.requests) if m == "POST"]

    def _create(self, flavour: str, space: object, parent: object, title: object,
                body: object) -> Reply:
        """A create (v2 or v1) under the lock: checks as Confluence does
        (confluence-create.md §1-§4), then stores the page with version 1."""
        v2 = flavour == "cloud"

        def refuse(status: int, text: str) -> Reply:
            return v2_error(status, "INVALID_REQUEST_PARAMETER" if status == 400 else text,
                            text) if v2 else v1_error(status, text)

        if space != (SPACE_ID if v2 else SPACE_KEY):
            return refuse(400 if v2 else 404, f"No space with key : {space}")
        if not isinstance(title, str) or not title.strip():
            return refuse(400, "Title is required for a non-draft page")
        if parent is not None and (str(parent) not in self.pages
                                   or str(parent) in self.hidden):
            return refuse(400 if v2 else 404, f"parent page {parent} not found")
        if not isinstance(body, str):
            return refuse(400, "Unsupported body representation")
        if self.page_by_title(title) is not None:
            text = ("A page with this title already exists: A page already exists with the "
                    f"{'same TITLE in this space' if v2 else f'title {title} in the space with key {SPACE_KEY}'}")
            if v2:
                return Reply(400, {"errors": [{"status": 400, "code": "BAD_REQUEST",
                                               "title": text, "detail": None}]})
            return v1_error(400, text)
        error = xhtml_error(body)
        if error:
            return refuse(400, error)
        stored = normalise(body, flavour) if self.normalise_bodies else body
        pid = self.add_page(title, stored, parent_id=str(parent or "4519001"), by="api")
        page = self.pages[pid]
        return Reply(200, self._v2_page(page, True) if v2 else
                     self._v1_page(page, {"body.storage", "version", "space", "ancestors"}))

    def _search(self, space: bool, query: dict) -> list[dict]:
        """The visible pages of the space (none for another space) whose title is the
        ``title`` asked for, if any, and (v2) whose id is one of ``id`` (comma-separated)."""
        ids = set(query["id"].split(",")) if "id" in query else None
        return [p for p in self.pages.values() if space and p["id"] not in self.hidden
                and ("title" not in query or p["title"] == query["title"])
                and (ids is None or p["id"] in ids)]

    def _listing(self, flavour: str, pages: list[dict], query: dict, path: str) -> Reply:
        """One page of a listing: v2 by ``cursor`` (an offset here), v1 by ``start``; the next
        one's address in ``_links.next`` (and v2's ``Link`` header)."""
        v2 = flavour == "cloud"
        start = int(query.get("cursor" if v2 else "start") or 0)
        limit = min(int(query.get("limit") or 25), self.page_limit)
        chunk = pages[start:start + limit]
        # What each listing holds: v2 children (ChildPage) no version, v2 pages (PageBulk)
        # their current version; v1 the version with expand=version.
        with_version = (path == "/wiki/api/v2/pages" if v2
                        else "version" in query.get("expand", "").split(","))
        results = [({"id": p["id"], "status": p["status"], "title": p["title"],
                     "spaceId": p["spaceId"], "parentId": p["parentId"],
                     "childPosition": i} if v2 else
                    {"id": p["id"], "type": "page", "status": p["status"], "title": p["title"],
                     "ancestors": [{"id": p["parentId"], "type": "page"}]})
                   for i, p in enumerate(chunk, start)]
        if with_version:
            for result, p in zip(results, chunk, strict=True):
                result["version"] = {"number": p["version"], "message": p["message"],
                                     "minorEdit": p["minorEdit"], "createdAt": _now()}
        links: dict[str, str] = {}
        headers = {}
        if start + limit < len(pages):
            rest = {k: v for k, v in query.items() if k not in ("cursor", "start")}
            rest["cursor" if v2 else "start"] = str(start + limit)
            nxt = path + "?" + "&".join(f"{k}={quote(str(v))}" for k, v in rest.items())
            links["next"] = nxt
            if v2:
                headers["Link"] = f'<{nxt}>; rel="next"'
        data: dict[str, Any] = {"results": results, "_links": links}
        if not v2:
            data.update(start=start, limit=limit, size=len(chunk))
        return Reply(200, data, headers=headers)

    def version(self, page_id: str) -> int:
        return self.pages[page_id]["version"]

    def human_edit(self, page_id: str, transform: Callable[[str], str],
                   message: str = "human edit") -> None:
        """Save a new version of the page as a person in the editor would."""
        with self.lock:
            page = self.pages[page_id]
            self._save(page, transform(page["body"]), message, False, "human")

    def _save(self, page: dict, body: str, message: str, minor: bool, by: str) -> None:
        page["version"] += 1
        page["body"] = body
        page["message"] = message
        page["minorEdit"] = minor
        page["history"].append({"number": page["version"], "body": body, "message": message,
                                "minorEdit": minor, "by": by})

    # --- fault injection and observation ---

    def fail_next(self, n: int, status: int = 503, retry_after: str | float | None = None, *,
                  method: str | None = None, path_contains: str | None = None,
                  body: str | bytes | dict | None = None, content_type: str | None = None,
                  headers: dict | None = None) -> None:
        """Answer the next ``n`` matching requests with ``status``, before authentication, as a
        proxy, an outage or the rate limiter would. ``body`` replaces the JSON envelope."""
        with self.lock:
            self._faults.append({"n": n, "status": status, "retry_after": retry_after,
                                 "method": method, "path": path_contains, "body": body,
                                 "content_type": content_type, "headers": headers or {}})

    def edit_before_put(self, page_id: str, transform: Callable[[str], str],
                        times: int = 1) -> None:
        """The next ``times`` PUTs of the page find that a person saved it just before (so a
        PUT built on the earlier read gets 409)."""
        with self.lock:
            self._edits.append({"id": page_id, "transform": transform, "n": times})

    def fail_after_put(self, n: int = 1, status: int = 500, *, delay: float = 0.0,
                       body: str | None = None) -> None:
        """The next ``n`` accepted PUTs are saved, then answered after ``delay`` seconds with
        ``status`` (a ``delay`` above the client's timeout looks like a timeout)."""
        with self.lock:
            self._after_put.append({"n": n, "status": status, "delay": delay, "body": body})

    def count(self, method: str | None = None, path_contains: str | None = None) -> int:
        """How many requests matched ``method`` and contained ``path_contains``."""
        return sum(1 for m, p, _q, _b in list(self.requests)
                   if (method is None or m == method.upper())
                   and (path_contains is None or path_contains in p))

    def puts(self) -> list[Any]:
        """The JSON bodies of all PUT requests, in order."""
        return [b for m, _p, _q, b in list(self.requests) if m == "PUT"]

    # --- request handling ---

    def respond(self, method: str, raw_path: str, headers: Any, body: bytes) -> Reply:
        """Answer one request; a PUT that was saved may still get a fault (``fail_after_put``)."""
        reply = self.handle(method, raw_path, headers, body)
        if method == "PUT" and reply.status == 200:
            fault = self.after_put_fault()
            if fault is not None:
                time.sleep(fault["delay"])
                body_text = fault["body"] if fault["body"] is not None else HTML_502
                reply = Reply(fault["status"], body_text, "text/html")
        return reply

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> Reply:
        split = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        path = split.path
        try:
            parsed = json.loads(body) if body.strip() else None
        except ValueError:
            parsed = ValueError
        with self.lock:
            self.requests.append((method, path, query, parsed))
            self.auth_headers.append(headers.get("Authorization") or "")
        delay = self.latency + (self.put_latency if method == "PUT" else 0.0)
        if delay:
            time.sleep(delay)
        with self.lock:
            fault = self._take_fault(method, path)
        if fault is not None:
            return fault
        if path.startswith("/wiki/"):
            return self._cloud(method, path, query, parsed, headers)
        if self.context and not path.startswith(self.context + "/"):
            return Reply(404, "<html><body><h1>Not Found</h1></body></html>", "text/html")
        return self._datacenter(method, path[len(self.context):], query, parsed, headers)

    def _take_fault(self, method: str, path: str) -> Reply | None:
        for fault in self._faults:
            if fault["n"] <= 0:
                continue
            if fault["method"] and fault["method"].upper() != method:
                continue
            if fault["path"] and fault["path"] not in path:
                continue
            fault["n"] -= 1
            if fault["n"] == 0:
                self._faults.remove(fault)
            status = fault["status"]
            hdrs = dict(fault["headers"])
            if fault["retry_after"] is not None:
                hdrs["Retry-After"] = str(fault["retry_after"])
            if status == 429 and not path.startswith("/wiki/"):
                hdrs.setdefault("X-RateLimit-Limit", "20")
                hdrs.setdefault("X-RateLimit-Remaining", "0")
                hdrs.setdefault("X-RateLimit-Interval-Seconds", "1")
                hdrs.setdefault("X-RateLimit-FillRate", "10")
            if fault["body"] is not None:
                ctype = fault["content_type"] or (
                    "application/json" if isinstance(fault["body"], dict) else "text/html")
                return Reply(status, fault["body"], ctype, hdrs)
            reason = _REASONS.get(status, "Error")
            if path.startswith("/wiki/"):
                return v2_error(status, reason, None, hdrs)
            return v1_error(status, reason, hdrs)
        return None

    # --- Cloud ---

    def _cloud_auth(self, headers: Any) -> bool:
        expected = base64.b64encode(f"{self.email}:{self.api_token}".encode()).decode()
        return (headers.get("Authorization") or "") == f"Basic {expected}"

    def _cloud(self, method: str, path: str, query: dict, body: Any, headers: Any) -> Reply:
        if not self._cloud_auth(headers):
            # Cloud answers a bad pair with text, not JSON (reference §1).
            return Reply(401, "Basic authentication with passwords is deprecated.  For more "
                          "information, see: https://developer.atlassian.com/cloud/confluence/"
                          "deprecation-notice-basic-auth/", "text/plain;charset=UTF-8",
                          {"WWW-Authenticate": 'Basic realm="protected-area"'})
        if CLOUD_V1.match(path) or path.startswith("/wiki/rest/api/content"):
            return v1_error(410, GONE_TEXT)
        if path == "/wiki/api/v2/pages":
            with self.lock:
                if method == "POST":
                    if not isinstance(body, dict):
                        return v2_error(400, "INVALID_REQUEST_PARAMETER",
                                        "Request body is not JSON")
                    storage = body.get("body") or {}
                    if isinstance(storage.get("storage"), dict):  # apa's nested form
                        storage = storage["storage"]
                    return self._create("cloud", str(body.get("spaceId") or ""),
                                        body.get("parentId"), body.get("title"),
                                        storage.get("value"))
                if len(query.get("id", "").split(",")) > 250:
                    return v2_error(400, "INVALID_REQUEST_PARAMETER",
                                    "id: size must be between 0 and 250")
                space = query.get("space-id", SPACE_ID) == SPACE_ID
                return self._listing("cloud", self._search(space, query), query, path)
        m = V2_CHILDREN.match(path)
        if m:
            with self.lock:
                pid = unquote(m.group(1))
                if pid not in self.pages or pid in self.hidden:
                    return v2_error(404, "Not Found", None)
                kids = [p for p in self.children(pid) if p["id"] not in self.hidden]
                return self._listing("cloud", kids, query, path)
        m = V2_PAGE.match(path)
        if not m:
            return v2_error(404, "Not Found", f"No endpoint {path}")
        pid = unquote(m.group(1))
        if not pid.isdigit():
            return v2_error(400, "INVALID_REQUEST_PARAMETER",
                            f"Invalid value for id: {pid}")
        with self.lock:
            page = self.pages.get(pid)
            if page is None or pid in self.hidden:
                return v2_error(404, "Not Found", None)
            if method == "GET":
                return Reply(200, self._v2_page(page, query.get("body-format") == "storage"))
            if method != "PUT":
                return v2_error(405, "Method Not Allowed")
            if not isinstance(body, dict):
                return v2_error(400, "INVALID_REQUEST_PARAMETER", "Request body is not JSON")
            missing = [k for k in ("id", "status", "title", "body", "version") if k not in body]
            if missing:
                return v2_error(400, "INVALID_REQUEST_PARAMETER",
                                f"Missing required field(s): {', '.join(missing)}")
            if str(body["id"]) != pid:
                return v2_error(400, "INVALID_REQUEST_PARAMETER", "id does not match the path")
            storage = body["body"]
            if isinstance(storage.get("storage"), dict):
                storage = storage["storage"]
            if storage.get("representation") != "storage" or not isinstance(
                    storage.get("value"), str):
                return v2_error(400, "INVALID_REQUEST_PARAMETER", "body.representation")
            version = body["version"] or {}
            result = self._put(page, pid, "cloud", body["title"], storage["value"],
                               version.get("number"), version.get("message") or "", False)
            if isinstance(result, Reply):
                return result
            return Reply(200, self._v2_page(page, True))

    def _v2_page(self, page: dict, with_body: bool) -> dict:
        data = {"id": page["id"], "status": page["status"], "title": page["title"],
                "spaceId": page["spaceId"], "parentId": page["parentId"], "parentType": "page",
                "position": 4, "authorId": "5b10ac8d82e05b22cc7d4ef5",
                "ownerId": "5b10ac8d82e05b22cc7d4ef5", "lastOwnerId": None,
                "createdAt": "2025-11-03T09:12:44.120Z",
                "version": {"createdAt": _now(), "message": page["message"],
                            "number": page["version"], "minorEdit": page["minorEdit"],
                            "authorId": "5b10ac8d82e05b22cc7d4ef5"},
                "body": {},
                "_links": {"webui": f"/spaces/SRE/pages/{page['id']}", "tinyui": "/x/Iw1E",
                           "editui": f"/pages/resumedraft.action?draftId={page['id']}",
                           "base": self.cloud_url}}
        if with_body:
            data["body"] = {"storage": {"representation": "storage", "value": page["body"]}}
        return data

    # --- Data Center ---

    def _dc_user(self, headers: Any) -> str | None:
        """``"known"``, ``"anonymous"`` or None (401)."""
        auth = headers.get("Authorization") or ""
        if auth == f"Bearer {self.pat}":
            return "known"
        basic = base64.b64encode(f"{self.dc_user}:{self.dc_password}".encode()).decode()
        if auth == f"Basic {basic}":
            return "known"
        if auth.startswith("Bearer ") and self.anonymous_access:
            return "anonymous"  # CONFSERVER-98199: a wrong PAT runs as anonymous
        if not auth and self.anonymous_access:
            return "anonymous"
        return None

    def _datacenter(self, method: str, path: str, query: dict, body: Any,
                    headers: Any) -> Reply:
        who = self._dc_user(headers)
        if who is None:
            return v1_error(401, "This request requires authentication",
                            {"WWW-Authenticate": 'OAuth realm="http%3A%2F%2Flocalhost"'})
        if path == "/rest/api/user/current" and method == "GET":
            if who == "anonymous":
                return Reply(200, {"type": "anonymous", "displayName": "Anonymous",
                                    "profilePicture": {"path": "/images/icons/profilepics/"
                                                               "anonymous.svg"}})
            return Reply(200, {"type": "known", "username": self.dc_user,
                                "userKey": "8a7f80c2fake", "displayName": "Jane Doe"})
        if path in ("/rest/api/content", "/rest/api/content/"):
            with self.lock:
                if who == "anonymous":
                    return v1_error(403, "Cannot create a page in space")
                if method == "POST":
                    if not isinstance(body, dict) or body.get("type") != "page":
                        return v1_error(400, "Could not parse the request body as JSON")
                    ancestors = body.get("ancestors") or [{}]
                    storage = (body.get("body") or {}).get("storage") or {}
                    if storage.get("representation") != "storage":
                        return v1_error(400, "Unsupported body representation")
                    return self._create("datacenter", (body.get("space") or {}).get("key"),
                                        ancestors[-1].get("id"), body.get("title"),
                                        storage.get("value"))
                space = query.get("spaceKey", SPACE_KEY) == SPACE_KEY
                return self._listing("datacenter", self._search(space, query), query, path)
        m = V1_CHILDREN.match(path)
        if m:
            with self.lock:
                pid = unquote(m.group(1))
                if pid not in self.pages or pid in self.hidden or who == "anonymous":
                    return v1_error(404, f"No content found with id: ContentId{{id={pid}}}")
                kids = [p for p in self.children(pid) if p["id"] not in self.hidden]
                return self._listing("datacenter", kids, query, path)
        m = re.match(r"^/rest/api/content/([^/]+)$", path)
        if not m:
            return Reply(404, "<html><body><h1>Not Found</h1></body></html>", "text/html")
        pid = unquote(m.group(1))
        with self.lock:
            page = self.pages.get(pid)
            if page is None or pid in self.hidden or who == "anonymous":
                return v1_error(404, f"No content found with id: ContentId{{id={pid}}}")
            if method == "GET":
                expand = set(filter(None, query.get("expand", "").split(",")))
                return Reply(200, self._v1_page(page, expand))
            if method != "PUT":
                return v1_error(405, "Method Not Allowed")
            if not isinstance(body, dict):
                return v1_error(400, "Could not parse the request body as JSON")
            if body.get("type") != "page" or "version" not in body:
                return v1_error(400, "Type and version are required to update content")
            if not body.get("title"):
                return v1_error(400, "Title is required for a non-draft page")
            storage = (body.get("body") or {}).get("storage") or {}
            if storage.get("representation") != "storage" or not isinstance(
                    storage.get("value"), str):
                return v1_error(400, "Unsupported body representation")
            version = body.get("version") or {}
            result = self._put(page, pid, "datacenter", body["title"], storage["value"],
                               version.get("number"), version.get("message") or "",
                               bool(version.get("minorEdit")))
            if isinstance(result, Reply):
                return result
            return Reply(200, self._v1_page(page, {"body.storage", "version"}))

    def _v1_page(self, page: dict, expand: set[str]) -> dict:
        base = self.dc_url
        data: dict[str, Any] = {
            "id": page["id"], "type": "page", "status": page["status"], "title": page["title"],
            "_links": {"webui": f"/display/SRE/{page['id']}", "tinyui": "/x/AQAB",
                       "self": f"{base}/rest/api/content/{page['id']}", "base": base,
                       "context": self.context},
            "_expandable": {"children": f"/rest/api/content/{page['id']}/child",
                            "ancestors": "", "body": ""}}
        if "version" in expand or not expand:
            data["version"] = {"by": {"type": "known", "username": self.dc_user,
                                      "displayName": "Jane Doe"},
                               "when": _now(), "message": page["message"],
                               "number": page["version"], "minorEdit": page["minorEdit"],
                               "hidden": False}
        if "space" in expand:
            data["space"] = {"key": SPACE_KEY, "name": "Site Reliability", "type": "global"}
        if "ancestors" in expand:
            data["ancestors"] = [{"id": page["parentId"], "type": "page"}]
        if "body.storage" in expand:
            data["body"] = {"storage": {"value": page["body"], "representation": "storage",
                                        "_expandable": {"content": ""}},
                            "_expandable": {"view": "", "editor": ""}}
        return data

    # --- shared write path ---

    def _put(self, page: dict, pid: str, flavour: str, title: str, body: str, number: Any,
             message: str, minor: bool) -> Reply | None:
        """Apply a PUT under the lock; a Reply when refused, None when saved."""
        v2 = flavour == "cloud"
        for edit in self._edits:
            if edit["id"] == pid and edit["n"] > 0:
                edit["n"] -= 1
                self._save(page, edit["transform"](page["body"]), "human edit", False, "human")
        self._edits = [e for e in self._edits if e["n"] > 0]
        if pid in self.forbidden:
            text = ("Could not update Content of type : class com.atlassian.confluence.pages."
                    f"Page with id {pid}")
            return v2_error(403, text) if v2 else v1_error(403, text)
        if number != page["version"] + 1:
            text = f"Version must be incremented on update. Current version is: {page['version']}"
            return v2_error(409, text) if v2 else v1_error(409, text)
        error = xhtml_error(body)
        if error:
            return v2_error(400, "INVALID_REQUEST_PARAMETER", error) if v2 else v1_error(
                400, f"com.atlassian.confluence.api.service.exceptions.BadRequestException: "
                     f"{error}")
        page["title"] = title
        stored = normalise(body, flavour) if self.normalise_bodies else body
        self._save(page, stored, message, minor, "api")
        page["history"][-1]["sent"] = body  # the body exactly as the client sent it
        return None

    def after_put_fault(self) -> dict | None:
        with self.lock:
            for fault in self._after_put:
                if fault["n"] > 0:
                    fault["n"] -= 1
                    return fault
        return None
