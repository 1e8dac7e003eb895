"""A plain web site on 127.0.0.1 for ``http`` checks (a runbook, a health page).

``page(path, body, status)`` serves a page; ``redirect(path, location, status)`` a redirect
(to a path here or to any URL). Every request's credentials (``Authorization``, ``Cookie``)
are kept in ``credentials_seen`` so a test can show that none were sent; ``busy_max`` (from
``FakeSource``) shows how many requests were being answered at once.
"""

from __future__ import annotations

from typing import Any

from fake_http import FakeSource, Reply


class FakeWeb(FakeSource):
    """A web site of static pages and redirects."""

    def __init__(self, latency: float = 0.0) -> None:
        super().__init__(latency)
        self.pages: dict[str, tuple[int, str, dict[str, str]]] = {}
        self.credentials_seen: list[str] = []

    def page(self, path: str, body: str = "ok", status: int = 200) -> str:
        """Serve ``body`` at ``path``; returns its URL."""
        self.pages[path] = (status, body, {})
        return self.url + path

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        """Redirect ``path`` to ``location``; returns the URL of ``path``."""
        self.pages[path] = (status, "", {"Location": location})
        return self.url + path

    def serve(self, method: str, path: str, query: dict[str, list[str]], headers: Any,
              body: bytes) -> Reply:
        for name in ("Authorization", "Cookie", "Proxy-Authorization"):
            if headers.get(name):
                self.credentials_seen.append(f"{name}: {headers.get(name)}")
        status, text, extra = self.pages.get(path, (404, "not found", {}))
        return Reply(status, text, "text/html; charset=utf-8", extra)
