"""A stateful fake of the Rally WSAPI v2.0 on 127.0.0.1, for tests and benchmarks.

It follows the facts in ``reference/rally.md`` (checklist in §11): ``ZSESSIONID`` auth with the
Jetty 401 page, ``/slm/webservice/v2.0`` paths with an optional ``.js`` suffix, refs in three
forms, the query grammar (binary AND/OR only), paging, ``fetch``, 200 answers carrying
``Errors``, creates/updates/deletes, ``/batch``, tags and features.

Usage::

    with FakeRally() as fake:
        client = RallyClient(fake.url, fake.api_key, fake.workspace_id, fake.project_id)
        fake.seed_stories(3, "SRE-Maturity", fake.feature_ref)

Fault injection: ``fail_next``, ``fail_after_creates``, ``serve_then_fail`` (the work done, the
answer lost), ``malformed_next``, ``latency``, ``disable_batch``. Observation: ``requests``, ``count()``, ``max_concurrent``. State: ``stories``
(ObjectID -> story dict, refs stored as ``/type/oid``) may be edited directly.

Where the reference marks behaviour unknown [U], the fake picks one and says so: pagesize above
2000 is clamped; omitted projectScopeDown counts as true; a duplicate tag name is refused.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fake_http import FakeServer, Reply

API_PATH = "/slm/webservice/v2.0"
DEFAULT_KEY = "_fakeRallyKey0123456789"
SCHEDULE_STATES = ["Defined", "In-Progress", "Completed", "Accepted"]
PARENT_AND_PI = ("Validation error: HierarchicalRequirement.parentArtifact should not be set if "
                 "HierarchicalRequirement.Parent is set and vice versa")
NOT_FOUND = "Cannot find object to read"
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "contains", "!contains")

# type key -> (display type, single-object wrapper, {attribute: (kind, ref target type)})
_COMMON = {"ObjectID": ("int", None), "Name": ("str", None), "CreationDate": ("date", None),
           "Workspace": ("ref", "workspace")}
SCHEMA: dict[str, tuple[str, str, dict[str, tuple[str, str | None]]]] = {
    "workspace": ("Workspace", "Workspace", {"ObjectID": ("int", None), "Name": ("str", None)}),
    "project": ("Project", "Project", {**_COMMON, "Parent": ("ref", "project")}),
    "user": ("User", "User", {"ObjectID": ("int", None), "UserName": ("str", None),
                              "DisplayName": ("str", None), "EmailAddress": ("str", None)}),
    "tag": ("Tag", "Tag", {**_COMMON, "Archived": ("bool", None)}),
    "portfolioitem/feature": ("PortfolioItem/Feature", "Feature", {
        **_COMMON, "FormattedID": ("fid", None), "Project": ("ref", "project")}),
    "hierarchicalrequirement": ("HierarchicalRequirement", "HierarchicalRequirement", {
        **_COMMON, "FormattedID": ("fid", None), "Description": ("str", None),
        "Notes": ("str", None), "ScheduleState": ("state", None), "Blocked": ("bool", None),
        "PlanEstimate": ("num", None), "LastUpdateDate": ("date", None),
        "Project": ("ref", "project"), "PortfolioItem": ("ref", "portfolioitem/feature"),
        "Feature": ("ref", "portfolioitem/feature"), "Parent": ("ref", "hierarchicalrequirement"),
        "Owner": ("ref", "user"), "Tags": ("refs", "tag")}),
}
READ_ONLY = {"ObjectID", "FormattedID", "CreationDate", "LastUpdateDate", "Feature", "Workspace"}
CREATABLE = {"hierarchicalrequirement", "tag"}

PAGE_401 = """<html>
<head>
<meta http-equiv="Content-Type" content="text/html;charset=ISO-8859-1"/>
<title>Error 401 Full authentication is required to access this resource</title>
</head>
<body><h2>HTTP ERROR 401</h2>
<p>Problem accessing {path}. Reason:
<pre>    Full authentication is required to access this resource</pre></p><hr><i><small>Powered by Jetty://</small></i><hr/>
</body>
</html>
"""
PAGE_ERROR = """<html><head><title>Error {status} {reason}</title></head>
<body><h2>HTTP ERROR {status}</h2><p>Problem accessing {path}. Reason:
<pre>    {reason}</pre></p><hr><i><small>Powered by Jetty://</small></i></body></html>
"""
IP_TEXT = ("Your IP address, 127.0.0.1, is not within the allowed range that your subscription "
           "administrator has configured.")


class QueryError(ValueError):
    """A query the server cannot parse; the message is what Rally puts in ``Errors``."""


# --- query grammar ---------------------------------------------------------------------------

_TOKEN = re.compile(r'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|([^\s()"]+))', re.S)


def tokenize(text: str) -> list[tuple[str, Any]]:
    """Tokens of a query: ``("(",)``, ``(")",)``, ``("str", value)``, ``("word", text)``."""
    tokens: list[tuple[str, Any]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise QueryError(f"Could not parse: Unexpected character at position {pos} in "
                             f'"{text}"')
        if m.group(1):
            tokens.append(("(", "("))
        elif m.group(2):
            tokens.append((")", ")"))
        elif m.group(3) is not None:
            tokens.append(("str", re.sub(r"\\(.)", r"\1", m.group(3), flags=re.S)))
        elif m.group(4):
            tokens.append(("word", m.group(4)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return tokens


def parse_query(text: str) -> tuple:
    """Parse a WSAPI query into ``("cmp", path, op, value)`` / ``("AND"|"OR", left, right)``.

    ``value`` is a string, or None for the bare word ``null``. Raises ``QueryError`` with a
    Rally-style ``Could not parse: ...`` message (e.g. for a flat three-term AND).
    """
    tokens = tokenize(text)
    pos = 0

    def peek() -> tuple[str, Any] | None:
        return tokens[pos] if pos < len(tokens) else None

    def expect(kind: str) -> tuple[str, Any]:
        nonlocal pos
        tok = peek()
        if tok is None or tok[0] != kind:
            saw = tok[1] if tok else "end of query"
            raise QueryError(f'Could not parse: Error parsing expression -- expected "{kind}" '
                             f'but saw "{saw}" instead.')
        pos += 1
        return tok

    def expr() -> tuple:
        nonlocal pos
        expect("(")
        tok = peek()
        if tok and tok[0] == "(":
            left = expr()
            op = expect("word")[1]
            if op.upper() not in ("AND", "OR"):
                raise QueryError(f'Could not parse: Error parsing expression -- expected "AND" '
                                 f'or "OR" but saw "{op}" instead.')
            right = expr()
            expect(")")
            return (op.upper(), left, right)
        path = expect("word")[1]
        op_tok = expect("word")[1]
        if op_tok not in OPERATORS:
            raise QueryError(f'Could not parse: Unknown operator "{op_tok}" in "{text}"')
        tok = peek()
        if tok is None or tok[0] not in ("str", "word"):
            raise QueryError(f'Could not parse: Missing value after "{path} {op_tok}"')
        pos += 1
        value = None if tok == ("word", "null") else tok[1]
        expect(")")
        return ("cmp", path, op_tok, value)

    tree = expr()
    if pos != len(tokens):
        raise QueryError(f'Could not parse: Error parsing expression -- expected "end of '
                         f'query" but saw "{tokens[pos][1]}" instead.')
    return tree


def parse_ref(value: Any) -> tuple[str, int] | None:
    """(type key, ObjectID) from a ref in any form: full URL, ``/type/1``, ``type/1``, dict."""
    if isinstance(value, dict):
        value = value.get("_ref")
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if API_PATH in text:
        text = text.split(API_PATH, 1)[1]
    text = text.split("?", 1)[0].strip("/")
    if text.endswith(".js"):
        text = text[:-3]
    parts = text.split("/")
    if len(parts) < 2 or not parts[-1].isdigit():
        return None
    return "/".join(parts[:-1]).lower(), int(parts[-1])


def norm_ref(value: Any) -> str | None:
    ref = parse_ref(value)
    return f"/{ref[0]}/{ref[1]}" if ref else None


def _fid_key(value: Any) -> tuple:
    m = re.fullmatch(r"([A-Za-z]*)(\d+)", str(value or ""))
    return (m.group(1), int(m.group(2))) if m else (str(value or ""), 0)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + "000Z"


# --- the fake --------------------------------------------------------------------------------

def _html(status: int, reason: str, path: str, headers: dict | None = None) -> Reply:
    return Reply(status, PAGE_ERROR.format(status=status, reason=reason, path=path),
                  "text/html;charset=iso-8859-1", headers)


class FakeRally(FakeServer):
    """A Rally WSAPI server on 127.0.0.1 (port chosen by the OS), with seeded objects.

    Seeded: workspace ``workspace_id``; project ``project_id`` with a child project
    (``child_project_ref``) and an unrelated one (``other_project_ref``); features F1
    (``feature_ref``) and F2 (``other_feature_ref``); the current user; a tag ``Backlog``.
    """

    def __init__(self, *, api_key: str = DEFAULT_KEY, latency: float = 0.0) -> None:
        super().__init__()
        self.api_key = api_key
        self.valid_keys: set[str] = {api_key}
        self.latency = latency
        self.disable_batch = False
        self.max_batch_entries: int | None = None
        self.requests: list[tuple[str, str, dict]] = []
        self.last_headers: dict[str, str] = {}
        self.lock = threading.RLock()
        self._faults: list[dict] = []
        self._after: list[dict] = []
        self._malformed = 0
        self._creates_left: int | None = None
        self._create_fail: tuple[int, int | None] = (500, None)
        self._oids = itertools.count(100_000)
        self._fids: dict[str, itertools.count] = {"US": itertools.count(1),
                                                  "F": itertools.count(1)}
        self.objects: dict[str, dict[int, dict]] = {t: {} for t in SCHEMA}
        self.stories = self.objects["hierarchicalrequirement"]
        self.tags = self.objects["tag"]
        self._seed()

    # --- life cycle ---

    def _seed(self) -> None:
        self.workspace_id = str(self._add("workspace", Name="SRE Workspace"))
        self.workspace_ref = f"/workspace/{self.workspace_id}"
        self.project_id = str(self.add_project("SRE Platform").rsplit("/", 1)[1])
        self.project_ref = f"/project/{self.project_id}"
        self.child_project_ref = self.add_project("Payments Team", parent_ref=self.project_ref)
        self.other_project_ref = self.add_project("Unrelated Project")
        self.feature_ref = self.add_feature("SRE maturity uplift")
        self.other_feature_ref = self.add_feature("Something else")
        self.user_id = self._add("user", UserName="sre.bot@example.com",
                                 DisplayName="SRE Bot", EmailAddress="sre.bot@example.com")
        self.add_tag("Backlog")

    def full_ref(self, ref: str) -> str:
        return (self.url if self._server else "https://rally1.rallydev.com") + API_PATH + ref

    # --- seeding helpers ---

    def _add(self, tkey: str, **fields: Any) -> int:
        oid = next(self._oids)
        obj = {"ObjectID": oid, **fields}
        if tkey not in ("workspace", "user") and "Workspace" not in obj:
            obj["Workspace"] = getattr(self, "workspace_ref", None)
        if tkey in ("hierarchicalrequirement", "portfolioitem/feature"):
            obj.setdefault("FormattedID", self._next_fid("US" if tkey[0] == "h" else "F"))
            obj.setdefault("CreationDate", _now())
        self.objects[tkey][oid] = obj
        return oid

    def _next_fid(self, prefix: str) -> str:
        return f"{prefix}{next(self._fids[prefix])}"

    def add_project(self, name: str, parent_ref: str | None = None) -> str:
        return f"/project/{self._add('project', Name=name, Parent=norm_ref(parent_ref))}"

    def add_feature(self, name: str) -> str:
        oid = self._add("portfolioitem/feature", Name=name, Project=getattr(
            self, "project_ref", None))
        return f"/portfolioitem/feature/{oid}"

    def add_tag(self, name: str) -> str:
        return f"/tag/{self._add('tag', Name=name, Archived=False)}"

    def tag_ref(self, name: str) -> str | None:
        for oid, tag in self.tags.items():
            if tag.get("Name") == name:
                return f"/tag/{oid}"
        return None

    def seed_stories(self, n: int, tag: str | None = "SRE-Maturity",
                     parent_ref: str | None = None,
                     notes_fn: Callable[[int], str] | None = None, *,
                     project_ref: str | None = None, schedule_state: str = "Defined",
                     name_fn: Callable[[int], str] | None = None) -> list[int]:
        """Add ``n`` stories directly (no HTTP); returns their ObjectIDs."""
        with self.lock:
            tags = []
            if tag:
                tags = [self.tag_ref(tag) or self.add_tag(tag)]
            now = _now()
            oids = []
            for i in range(n):
                name = name_fn(i) if name_fn else f"Seeded story {i}"
                oids.append(self._add(
                    "hierarchicalrequirement", Name=name, Description="",
                    Notes=notes_fn(i) if notes_fn else "", ScheduleState=schedule_state,
                    Project=norm_ref(project_ref) or self.project_ref,
                    PortfolioItem=norm_ref(parent_ref), Parent=None, Owner=None,
                    Tags=list(tags), Blocked=False, PlanEstimate=None, LastUpdateDate=now))
            return oids

    def stories_tagged(self, name: str) -> list[dict]:
        ref = self.tag_ref(name)
        return [s for s in self.stories.values() if ref in (s.get("Tags") or [])]

    # --- fault injection and observation ---

    def fail_next(self, n: int, status: int = 503, retry_after: str | float | None = None,
                  path_contains: str | None = None, body: str | None = None,
                  headers: dict | None = None) -> None:
        """Answer the next ``n`` requests (whose path contains ``path_contains``) with
        ``status``; before authentication, as a proxy or an outage would."""
        with self.lock:
            self._faults.append({"n": n, "status": status, "retry_after": retry_after,
                                 "path": path_contains, "body": body, "headers": headers or {}})

    def fail_after_creates(self, k: int | None, status: int = 500,
                           times: int | None = None) -> None:
        """Let ``k`` create requests (single or batch) through, then fail the following ones
        with ``status`` — all of them (a server that died mid-push), or ``times`` of them.
        ``fail_after_creates(None)`` clears it."""
        with self.lock:
            self._creates_left = k
            self._create_fail = (status, times)

    def serve_then_fail(self, n: int, status: int | None = 504, *, delay: float = 0.0,
                        path_contains: str | None = None) -> None:
        """Do the work of the next ``n`` requests (whose path contains ``path_contains``),
        then lose the answer, as a gateway that times out on a slow backend does: answer
        ``status`` (an HTML error page), or with ``status=None`` close the connection without
        answering; ``delay`` seconds pass first (longer than the client's timeout: a timeout)."""
        with self.lock:
            self._after.append({"n": n, "status": status, "delay": delay,
                                "path": path_contains})

    def malformed_next(self, n: int) -> None:
        """Answer the next ``n`` requests with 200 and a body that is not JSON."""
        with self.lock:
            self._malformed += n

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """How many requests matched ``method`` and ``path`` (case-insensitive, exact)."""
        return sum(1 for m, p, _q in list(self.requests)
                   if (method is None or m == method.upper())
                   and (path is None or p.lower() == path.lower()))

    # --- request handling ---

    def respond(self, method: str, raw_path: str, headers: Any, body: bytes) -> Reply:
        split = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        path = split.path
        if path.startswith(API_PATH):
            path = path[len(API_PATH):] or "/"
        if path.endswith(".js"):
            path = path[:-3]
        with self.lock:
            self.requests.append((method, path, query))
            self.last_headers = dict(headers.items())
        if self.latency:
            time.sleep(self.latency)
        with self.lock:
            fault = self._take_fault(path)
            if fault is not None:
                return fault
            if self._malformed > 0:
                self._malformed -= 1
                return Reply(200, '{"QueryResult": {"Errors": [], "Results": [{"_ref": "')
            key = headers.get("ZSESSIONID")  # email.message headers: any case matches
            if not key or key not in self.valid_keys:
                return Reply(401, PAGE_401.format(path=split.path),
                              "text/html;charset=iso-8859-1")
            if not split.path.startswith(API_PATH + "/"):
                return _html(404, "Not Found", split.path)
            try:
                parsed = json.loads(body) if body.strip() else None
            except ValueError:
                return Reply(200, {"OperationResult": self._result(
                    ["Cannot parse input stream due to I/O error as JSON stream."])})
            reply = self.route(method, path, query, parsed, split.path)
            after = self._take_after(path)
        if after is None:
            return reply
        if after["delay"]:
            time.sleep(after["delay"])
        if after["status"] is None:
            return Reply(Reply.DROP, b"")
        return _html(after["status"], "Gateway Timeout" if after["status"] == 504 else
                     "Bad Gateway", API_PATH + path)

    def _take_after(self, path: str) -> dict | None:
        for fault in self._after:
            if fault["path"] is None or fault["path"] in path:
                fault["n"] -= 1
                if fault["n"] <= 0:
                    self._after.remove(fault)
                return fault
        return None

    def _take_fault(self, path: str) -> Reply | None:
        for fault in self._faults:
            if fault["n"] > 0 and (fault["path"] is None or fault["path"] in path):
                fault["n"] -= 1
                if fault["n"] == 0:
                    self._faults.remove(fault)
                status = fault["status"]
                headers = dict(fault["headers"])
                if fault["retry_after"] is not None:
                    headers["Retry-After"] = str(fault["retry_after"])
                if fault["body"] is not None:
                    return Reply(status, fault["body"], "text/html", headers)
                reason = {403: IP_TEXT, 429: "Too Many Requests", 500: "Server Error",
                          502: "Bad Gateway", 503: "Service Unavailable",
                          504: "Gateway Timeout"}.get(status, "Error")
                return _html(status, reason, API_PATH + path, headers)
        return None

    def _create_allowed(self, path: str) -> Reply | None:
        if self._creates_left is None:
            return None
        if self._creates_left > 0:
            self._creates_left -= 1
            return None
        status, times = self._create_fail
        if times is not None:
            if times <= 1:
                self._creates_left = None
            self._create_fail = (status, times - 1)
        return _html(status, "Server Error", API_PATH + path)

    @staticmethod
    def _result(errors: list[str] | None = None, warnings: list[str] | None = None,
                **extra: Any) -> dict:
        return {"_rallyAPIMajor": "2", "_rallyAPIMinor": "0", "Errors": errors or [],
                "Warnings": warnings or [], **extra}

    def route(self, method: str, path: str, query: dict, body: Any, raw: str = "",
              in_batch: bool = False) -> Reply:
        """Dispatch one API call (also used for each ``/batch`` entry)."""
        if path.endswith(".js"):
            path = path[:-3]
        parts = [p for p in path.split("/") if p]
        if not parts:
            return _html(404, "Not Found", raw)
        if parts == ["batch"]:
            if method != "POST" or self.disable_batch:
                return _html(404, "Not Found", raw)
            return self._batch(query, body, path)
        if parts[0].lower() == "portfolioitem" and len(parts) >= 2:
            tkey, rest = f"portfolioitem/{parts[1].lower()}", parts[2:]
        else:
            tkey, rest = parts[0].lower(), parts[1:]
        if tkey not in SCHEMA:
            return _html(404, "Not Found", raw)
        if method == "GET" and not rest:
            if tkey == "user":
                return self._read("user", self.user_id, query)
            return self._query(tkey, query)
        if len(rest) != 1:
            return _html(404, "Not Found", raw)
        if rest[0].lower() == "create" and method in ("POST", "PUT"):
            if tkey not in CREATABLE:
                return _html(405, "Method Not Allowed", raw)
            refused = None if in_batch else self._create_allowed(path)
            return refused or self._create(tkey, query, body)
        if not rest[0].isdigit():
            return _html(404, "Not Found", raw)
        oid = int(rest[0])
        if method == "GET":
            return self._read(tkey, oid, query)
        if method in ("POST", "PUT"):
            return self._update(tkey, oid, query, body)
        if method == "DELETE":
            if self.objects[tkey].pop(oid, None) is None:
                return Reply(200, {"OperationResult": self._result([NOT_FOUND])})
            return Reply(200, {"OperationResult": self._result()})
        return _html(405, "Method Not Allowed", raw)

    # --- reading ---

    def _fetch_spec(self, query: dict, default: Any) -> Any:
        fetch = query.get("fetch")
        if fetch is None or fetch == "":
            return default
        if fetch.lower() == "true":
            return True
        if fetch.lower() == "false":
            return False
        return [f.strip() for f in fetch.split(",") if f.strip()]

    def render(self, tkey: str, obj: dict, fetch: Any) -> dict:
        """An object as WSAPI returns it for ``fetch`` (True, False or a list of names)."""
        display, _wrapper, schema = SCHEMA[tkey]
        ref = f"/{tkey}/{obj['ObjectID']}"
        out: dict[str, Any] = {
            "_rallyAPIMajor": "2", "_rallyAPIMinor": "0", "_ref": self.full_ref(ref),
            "_refObjectUUID": str(uuid.UUID(int=obj["ObjectID"])),
            "_refObjectName": obj.get("Name") or obj.get("UserName") or "",
            "_type": display}
        if fetch is False:
            return out
        names = list(schema) if fetch is True else ["ObjectID", *fetch]
        for name in names:
            if name not in schema:
                continue
            kind, target = schema[name]
            value = obj.get(name)
            if name == "Feature" and tkey == "hierarchicalrequirement":
                value = self._feature_of(obj)
            if kind == "ref":
                out[name] = self._ref_stub(value) if value else None
            elif kind == "refs":
                members = [r for r in value or [] if self._get(r) is not None]
                stub: dict[str, Any] = {"_ref": self.full_ref(ref) + f"/{name}",
                                        "_type": SCHEMA[target][0], "Count": len(members)}
                if name == "Tags":
                    stub["_tagsNameArray"] = [
                        {"Name": self._get(r).get("Name"), "_ref": self.full_ref(r)}
                        for r in members]
                out[name] = stub
            else:
                out[name] = value
        return out

    def _ref_stub(self, ref: str) -> dict:
        parsed = parse_ref(ref)
        target = self._get(ref) or {}
        return {"_ref": self.full_ref(ref), "_refObjectName": target.get("Name", ""),
                "_type": SCHEMA[parsed[0]][0] if parsed and parsed[0] in SCHEMA else ""}

    def _get(self, ref: Any) -> dict | None:
        parsed = parse_ref(ref)
        if parsed is None or parsed[0] not in self.objects:
            return None
        return self.objects[parsed[0]].get(parsed[1])

    def _feature_of(self, story: dict, depth: int = 0) -> str | None:
        if story.get("PortfolioItem"):
            return story["PortfolioItem"]
        parent = self._get(story.get("Parent"))
        return self._feature_of(parent, depth + 1) if parent and depth < 50 else None

    def _read(self, tkey: str, oid: int, query: dict) -> Reply:
        obj = self.objects[tkey].get(oid)
        if obj is None:
            return Reply(200, {"OperationResult": self._result([NOT_FOUND])})
        rendered = self.render(tkey, obj, self._fetch_spec(query, True))
        rendered.update(Errors=[], Warnings=[])
        return Reply(200, {SCHEMA[tkey][1]: rendered})

    def _query(self, tkey: str, query: dict) -> Reply:
        try:
            objs = self.select(tkey, query)
        except QueryError as exc:
            return Reply(200, {"QueryResult": self._result(
                [str(exc)], TotalResultCount=0, StartIndex=0, PageSize=0, Results=[])})
        try:
            start = max(1, int(query.get("start") or 1))
            pagesize = int(query.get("pagesize") or 20)
        except ValueError:
            return Reply(200, {"QueryResult": self._result(
                ["Could not parse: start and pagesize must be numbers"], TotalResultCount=0,
                StartIndex=0, PageSize=0, Results=[])})
        pagesize = min(max(pagesize, 1), 2000)  # above 2000: clamped [U in reference]
        fetch = self._fetch_spec(query, False)
        page = [self.render(tkey, o, fetch) for o in objs[start - 1:start - 1 + pagesize]]
        return Reply(200, {"QueryResult": self._result(
            TotalResultCount=len(objs), StartIndex=start, PageSize=pagesize, Results=page)})

    def select(self, tkey: str, query: dict) -> list[dict]:
        """The objects a query returns, in order (raises QueryError)."""
        objs = list(self.objects[tkey].values())
        ws = norm_ref(query.get("workspace")) if query.get("workspace") else None
        if ws and tkey not in ("workspace", "user"):
            objs = [o for o in objs if o.get("Workspace") in (None, ws)]
        if tkey == "hierarchicalrequirement":
            objs = self._scope(objs, query)
        if query.get("query", "").strip():
            predicate = self.compile(tkey, parse_query(query["query"]))
            objs = [o for o in objs if predicate(o)]
        return self._order(tkey, objs, query.get("order") or "")

    def _scope(self, objs: list[dict], query: dict) -> list[dict]:
        project = query.get("project")
        if not project or project == "null":
            return objs
        root = norm_ref(project)
        down = query.get("projectScopeDown", "true").lower() != "false"
        up = query.get("projectScopeUp", "false").lower() == "true"
        allowed = {root}
        if down:
            changed = True
            while changed:
                changed = False
                for oid, p in self.objects["project"].items():
                    ref = f"/project/{oid}"
                    if ref not in allowed and p.get("Parent") in allowed:
                        allowed.add(ref)
                        changed = True
        if up:
            node = self._get(root)
            while node and node.get("Parent"):
                allowed.add(node["Parent"])
                node = self._get(node["Parent"])
        return [o for o in objs if o.get("Project") in allowed]

    def _order(self, tkey: str, objs: list[dict], order: str) -> list[dict]:
        schema = SCHEMA[tkey][2]
        objs = sorted(objs, key=lambda o: o["ObjectID"])
        for term in reversed([t.strip() for t in order.split(",") if t.strip()]):
            words = term.split()
            name, desc = words[0], len(words) > 1 and words[1].upper() == "DESC"
            kind = schema.get(name, ("str", None))[0]
            if name not in schema:
                continue  # e.g. Rank: no effect in the fake

            def key(o: dict, name: str = name, kind: str = kind) -> Any:
                v = o.get(name)
                if kind == "fid":
                    return _fid_key(v)
                if kind in ("int", "num"):
                    return (v is None, v or 0)
                if kind == "state":
                    return SCHEDULE_STATES.index(v) if v in SCHEDULE_STATES else -1
                return str(v or "").lower()

            objs.sort(key=key, reverse=desc)
        return objs

    # --- query evaluation ---

    def compile(self, tkey: str, tree: tuple) -> Callable[[dict], bool]:
        """A predicate for a parsed query on objects of ``tkey`` (raises QueryError)."""
        if tree[0] in ("AND", "OR"):
            left, right = self.compile(tkey, tree[1]), self.compile(tkey, tree[2])
            if tree[0] == "AND":
                return lambda o: left(o) and right(o)
            return lambda o: left(o) or right(o)
        _cmp, path, op, raw = tree
        steps = []
        current = tkey
        names = path.split(".")
        for i, name in enumerate(names):
            schema = SCHEMA[current][2]
            if name not in schema:
                raise QueryError(f'Could not parse: Could not find attribute "{name}" on type '
                                 f'{SCHEMA[current][0]} in the query segment "{path}"')
            kind, target = schema[name]
            steps.append((name, kind))
            if i < len(names) - 1:
                if kind not in ("ref", "refs"):
                    raise QueryError(f'Could not parse: Could not find attribute '
                                     f'"{names[i + 1]}" on type {SCHEMA[current][0]}')
                current = target or current
        leaf_kind = steps[-1][1]
        value = self._query_value(leaf_kind, raw, path)
        getter = self._getter(steps)
        test = _comparator(op, leaf_kind, value)
        if op.startswith("!"):
            # Negated operators hold when no value of the path matches (a collection such as
            # Tags.Name: none of the tags).
            return lambda o: not any(test(v) for v in getter(o) or [None])
        return lambda o: any(test(v) for v in getter(o) or [None])

    def _query_value(self, kind: str, raw: str | None, path: str) -> Any:
        if raw is None:
            return None
        try:
            if kind in ("ref", "refs"):
                ref = norm_ref(raw)
                if ref is None:
                    raise ValueError
                return ref
            if kind == "int":
                return int(raw)
            if kind == "num":
                return float(raw)
            if kind == "bool":
                if raw.lower() not in ("true", "false"):
                    raise ValueError
                return raw.lower() == "true"
            if kind == "state":
                return SCHEDULE_STATES.index(raw)
        except ValueError:
            raise QueryError(f'Could not parse: Invalid value "{raw}" for "{path}"') from None
        return raw

    def _getter(self, steps: list[tuple[str, str]]) -> Callable[[dict], list]:
        def get(obj: dict) -> list:
            current = [obj]
            for name, kind in steps[:-1]:
                nxt = []
                for o in current:
                    value = self._feature_of(o) if name == "Feature" else o.get(name)
                    refs = (value or []) if kind == "refs" else ([value] if value else [])
                    nxt.extend(t for t in (self._get(r) for r in refs) if t is not None)
                current = nxt
            name, kind = steps[-1]
            out: list = []
            for o in current:
                value = self._feature_of(o) if name == "Feature" else o.get(name)
                if kind == "refs":
                    out.extend(value or [])
                elif kind == "state":
                    out.append(SCHEDULE_STATES.index(value) if value in SCHEDULE_STATES
                               else None)
                else:
                    out.append(value)
            return out

        return get

    # --- writing ---

    def _apply(self, tkey: str, obj: dict, fields: dict, errors: list[str],
               warnings: list[str]) -> None:
        display, _wrapper, schema = SCHEMA[tkey]
        for name, value in fields.items():
            if name not in schema or name in READ_ONLY:
                warnings.append(f"Ignored JSON element {display}.{name} during processing of "
                                "this request.")
                continue
            kind, target = schema[name]
            if kind == "refs":
                if not isinstance(value, list) or not all(
                        isinstance(v, dict) and "_ref" in v for v in value):
                    errors.append(f"Could not set value for {name}: expected an array of "
                                  'objects such as [{"_ref": "/tag/123"}]')
                    continue
                refs = []
                for v in value:
                    ref = norm_ref(v)
                    if ref is None or self._get(ref) is None or parse_ref(ref)[0] != target:
                        errors.append(f"Could not read: {SCHEMA[target][0]} {v.get('_ref')}")
                    else:
                        refs.append(ref)
                obj[name] = refs
            elif kind == "ref":
                if value is None or value == "":
                    obj[name] = None
                    continue
                ref = norm_ref(value)
                if ref is None or parse_ref(ref)[0] != target or self._get(ref) is None:
                    shown = value.get("_ref") if isinstance(value, dict) else value
                    errors.append(f"Could not set value for {name}: {NOT_FOUND} ({shown})")
                    continue
                obj[name] = ref
            elif kind == "state":
                if value not in SCHEDULE_STATES:
                    errors.append(f'Could not set value for {name}: "{value}" is not a valid '
                                  "ScheduleState")
                    continue
                obj[name] = value
            elif kind == "str":
                limit = 256 if name == "Name" else 32768
                if value is not None and not isinstance(value, str):
                    value = str(value)
                if value and len(value) > limit:
                    errors.append(f"Validation error: {display}.{name} length must be <= "
                                  f"{limit}")
                    continue
                obj[name] = value
            else:
                obj[name] = value
        if tkey == "hierarchicalrequirement" and obj.get("Parent") and obj.get("PortfolioItem"):
            errors.append(PARENT_AND_PI)

    def _unwrap(self, tkey: str, body: Any) -> dict | None:
        if not isinstance(body, dict):
            return None
        wanted = tkey.rsplit("/", 1)[-1]
        for key, value in body.items():
            if key.lower() == wanted and isinstance(value, dict):
                return value
        return None

    def _create(self, tkey: str, query: dict, body: Any) -> Reply:
        display = SCHEMA[tkey][0]
        fields = self._unwrap(tkey, body)
        if fields is None:
            return Reply(200, {"CreateResult": self._result(
                [f"Could not read: the request body has no {display} object"], Object=None)})
        errors: list[str] = []
        warnings: list[str] = []
        obj: dict[str, Any] = {"ObjectID": 0}
        if tkey == "hierarchicalrequirement":
            project = query.get("project")
            obj.update(Name=None, Description="", Notes="", ScheduleState="Defined",
                       Project=norm_ref(project) if project and project != "null"
                       else self.project_ref,
                       PortfolioItem=None, Parent=None, Owner=None, Tags=[], Blocked=False,
                       PlanEstimate=None)
        else:
            obj.update(Name=None, Archived=False)
        self._apply(tkey, obj, {k: v for k, v in fields.items() if k != "Workspace"},
                    errors, warnings)
        if not (obj.get("Name") or "").strip():
            errors.append(f"Validation error: {display}.Name should not be null")
        if tkey == "tag" and not errors and self.tag_ref(obj["Name"]):
            errors.append(f'Validation error: a Tag named "{obj["Name"]}" already exists')
        if errors:
            return Reply(200, {"CreateResult": self._result(errors, warnings, Object=None)})
        del obj["ObjectID"]
        obj["Workspace"] = norm_ref(query.get("workspace")) or self.workspace_ref
        if tkey == "hierarchicalrequirement":
            obj["LastUpdateDate"] = _now()
        oid = self._add(tkey, **obj)
        rendered = self.render(tkey, self.objects[tkey][oid], self._fetch_spec(query, True))
        rendered["_CreatedAt"] = "just now"
        return Reply(200, {"CreateResult": self._result([], warnings, Object=rendered)})

    def _update(self, tkey: str, oid: int, query: dict, body: Any) -> Reply:
        display = SCHEMA[tkey][0]
        obj = self.objects[tkey].get(oid)
        if obj is None:
            return Reply(200, {"OperationResult": self._result(
                [f"Could not read: Could not read {display} {oid} to update."])})
        fields = self._unwrap(tkey, body)
        if fields is None:
            return Reply(200, {"OperationResult": self._result(
                [f"Could not read: the request body has no {display} object"])})
        errors: list[str] = []
        warnings: list[str] = []
        changed = dict(obj)
        self._apply(tkey, changed, fields, errors, warnings)
        if errors:
            return Reply(200, {"OperationResult": self._result(errors, warnings)})
        if tkey == "hierarchicalrequirement":
            changed["LastUpdateDate"] = _now()
        obj.clear()
        obj.update(changed)
        rendered = self.render(tkey, obj, self._fetch_spec(query, True))
        return Reply(200, {"OperationResult": self._result([], warnings, Object=rendered)})

    def _batch(self, query: dict, body: Any, path: str) -> Reply:
        entries = body.get("Batch") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            return Reply(200, {"BatchResult": self._result(
                ['Could not read: the request body has no "Batch" array'], Results=[])})
        if self.max_batch_entries is not None and len(entries) > self.max_batch_entries:
            return Reply(200, {"BatchResult": self._result(
                [f"Batch has {len(entries)} entries; at most {self.max_batch_entries} are "
                 "allowed"], Results=[])})
        if any(self._is_create(e) for e in entries):
            refused = self._create_allowed(path)
            if refused is not None:
                return refused
        results = []
        for item in entries:
            entry = item.get("Entry", item) if isinstance(item, dict) else {}
            split = urlsplit(str(entry.get("Path", "")))
            sub_path = split.path.split(API_PATH, 1)[-1]
            sub_query = dict(query)
            sub_query.update({k: v[-1] for k, v in parse_qs(split.query).items()})
            reply = self.route(str(entry.get("Method", "GET")).upper(), sub_path, sub_query,
                               entry.get("Body"), sub_path, in_batch=True)
            inner = reply.payload
            if isinstance(inner, dict) and len(inner) == 1:
                inner = next(iter(inner.values()))
            if not isinstance(inner, dict):
                results.append({"Errors": [f"HTTP {reply.status}"], "Warnings": []})
            elif "Results" in inner or "Object" in inner or "Errors" not in inner:
                results.append({"Object": inner.get("Object", inner),
                                "Errors": inner.get("Errors") or [],
                                "Warnings": inner.get("Warnings") or []})
            else:
                results.append({"Errors": inner["Errors"], "Warnings": inner["Warnings"]})
        return Reply(200, {"BatchResult": self._result(Results=results)})

    @staticmethod
    def _is_create(item: Any) -> bool:
        entry = item.get("Entry", item) if isinstance(item, dict) else {}
        return str(entry.get("Path", "")).split("?")[0].rstrip("/").lower().endswith("/create")


def _comparator(op: str, kind: str, value: Any) -> Callable[[Any], bool]:
    if op in ("contains", "!contains"):
        needle = str(value or "").lower()
        return lambda v: v is not None and needle in str(v).lower()
    if op in ("=", "!="):
        return lambda v: (v in (None, "") if value is None else v == value)
    if value is None:
        raise QueryError(f'Could not parse: "{op}" cannot compare with null')

    def ordered(v: Any) -> bool:
        if v is None:
            return False
        try:
            return {"<": v < value, "<=": v <= value, ">": v > value, ">=": v >= value}[op]
        except TypeError:
            return False

    return ordered
