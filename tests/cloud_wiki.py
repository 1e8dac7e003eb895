"""Confluence Cloud's reading of pasted wiki markup, from Atlassian's own converter
(``@atlaskit/editor-wikimarkup-transformer``, installed from ``tests/wikimarkup/package-lock.json``
by ``npm ci``) run in node: the Cloud oracle beside the server renderer's port
(``tests/wiki_renderer.py``).

One node process serves the whole test session (``tests/wikimarkup/read.js``: one JSON line in,
one out). It is never skipped: without node or the installed package the tests fail, saying
what to run.
"""

from __future__ import annotations

import atexit
import json
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent / "wikimarkup"
INSTALL = f"cd {HERE} && npm ci"


@dataclass
class Cell:
    header: bool
    text: str  # what the reader sees ("\n" for a line break, a lozenge's title)
    marks: list[str]  # formatting on the text ("link:<href>"; a header's own bold left out)
    nodes: list[str]  # everything that is not plain text ("status:<title>:<colour>", "emoji")


class _Oracle:
    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen[str]:
        node = shutil.which("node")
        if node is None:
            raise AssertionError("node is not installed: the Cloud wiki oracle needs it "
                                 "(.ci/run installs it)")
        if not (HERE / "node_modules" / "@atlaskit" / "editor-wikimarkup-transformer").is_dir():
            raise AssertionError(f"the Cloud wiki oracle is not installed: run {INSTALL}")
        proc = subprocess.Popen([node, str(HERE / "read.js")], cwd=HERE, text=True,
                                encoding="utf-8", stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
        atexit.register(proc.kill)
        return proc

    def read(self, markup: str) -> list[dict]:
        """The document's blocks as read.js describes them."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            assert self._proc.stdin and self._proc.stdout
            self._proc.stdin.write(json.dumps(markup) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        if not line:
            raise AssertionError("the Cloud wiki oracle (node read.js) stopped")
        answer = json.loads(line)
        if "error" in answer:
            raise AssertionError(f"Cloud's converter failed: {answer['error']}")
        return answer["blocks"]


_ORACLE = _Oracle()


def read(markup: str) -> list[dict]:
    """The blocks Cloud's editor makes of ``markup`` (tables, headings, paragraphs)."""
    return _ORACLE.read(markup)


def read_tables(markup: str) -> list[list[list[Cell]]]:
    """Every table of ``markup`` as rows of :class:`Cell`."""
    return [[[Cell(**c) for c in row] for row in block["rows"]]
            for block in read(markup) if block["type"] == "table"]


def read_table(markup: str) -> list[list[Cell]]:
    """The one table of ``markup``."""
    tables = read_tables(markup)
    assert len(tables) == 1, f"{len(tables)} tables in {markup!r}"
    return tables[0]
