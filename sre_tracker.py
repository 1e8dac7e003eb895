#!/usr/bin/env python3
"""sre-tracker: track SRE maturity per asset, turn gaps into Rally stories and a Confluence
to-do table, and keep the whole history in git.

Reads top to bottom: build the parser, parse, build the context, dispatch to one small handler
per command. Handlers load, call the domain modules, print. Heavy imports (pandas, requests,
lxml) happen inside the handlers that need them, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from config import __version__, mask_secrets
from sre_maturity.support.context import Context
from sre_maturity.support.errors import (
    CLONE_NAME,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    TrackerError,
    program_name,
)

log = logging.getLogger("sre_tracker")

# The runtime dependencies by the name they are imported as (requirements.txt): heavy ones are
# imported only by the commands that need them, so a missing one shows up mid-command.
RUNTIME_PACKAGES = {"requests": "requests", "urllib3": "urllib3", "dotenv": "python-dotenv",
                    "pandas": "pandas", "bs4": "beautifulsoup4", "lxml": "lxml"}

EPILOG_ENV = (
    "Settings come from flags, then the environment, then .env in the data folder "
    "(see .env.example). Exit codes: 0 done, 1 error, 2 usage, 3 partly done, 4 gate closed, "
    "130 interrupted."
)


# ---------------------------------------------------------------------------- handlers
def cmd_setup(args: argparse.Namespace, ctx: Context) -> int:
    """Create or refresh the data folder from its CSVs (interactively or --from-csv)."""
    from sre_maturity.commands import setup_data
    opts = setup_data.SetupOptions.from_args(args)
    if opts.from_csv:
        return setup_data.run(opts, ctx)
    import interactive_setup
    from sre_maturity.support.errors import InputError
    from sre_maturity.support.prompts import Quit

    # The folder's lock is taken to write, not while the prompts wait for someone.
    try:
        new_flows = interactive_setup.run(ctx)
        while True:
            try:
                with ctx.writing():
                    return setup_data.run(opts, ctx, new_flows=new_flows)
            except InputError as exc:
                if new_flows is None:
                    raise
                new_flows = interactive_setup.review_refused(ctx, new_flows, str(exc))
    except Quit:
        print("quit: nothing written", file=ctx.term)
        return EXIT_OK


def cmd_assess(args: argparse.Namespace, ctx: Context) -> int:
    """Assess one capability (or --all) of an asset, record it and commit; --auto runs the
    checks, --override / --clear-override record or lift a person's answer to one."""
    from sre_maturity.commands import autoassess
    if args.auto or args.override or args.clear_override:
        return autoassess.run(autoassess.AutoOptions.from_args(args), ctx)
    autoassess.refuse_auto_flags(autoassess.AutoOptions.from_args(args))
    from sre_maturity.commands import assessment
    return assessment.run(assessment.AssessOptions.from_args(args), ctx)


def cmd_report(args: argparse.Namespace, ctx: Context) -> int:
    """Write rally_import.csv and confluence_page.txt; with --push create stories."""
    from sre_maturity.commands import report
    return report.run(report.ReportOptions.from_args(args), ctx)


def cmd_sync(args: argparse.Namespace, ctx: Context) -> int:
    """Pull story states from Rally (or a Rally CSV export), commit, update the page."""
    from sre_maturity.commands import sync
    return sync.run(sync.SyncOptions.from_args(args), ctx)


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    """Show the matrix, the flows' weakest links and the open items."""
    from sre_maturity.commands import status
    return status.run(status.StatusOptions.from_args(args), ctx)


def cmd_gate(args: argparse.Namespace, ctx: Context) -> int:
    """Go-live gate: exit 4 when go-live items are open or go-live capabilities unassessed."""
    from sre_maturity.commands import gate
    return gate.run(gate.GateOptions.from_args(args), ctx)


def cmd_history(args: argparse.Namespace, ctx: Context) -> int:
    """Print the assessment history, newest first."""
    from sre_maturity.commands import history
    return history.run(history.HistoryOptions.from_args(args), ctx)


def cmd_export(args: argparse.Namespace, ctx: Context) -> int:
    """Write the matrix (or with --items, every action item) to CSV."""
    from sre_maturity.commands import export
    return export.run(export.ExportOptions.from_args(args), ctx)


def cmd_check(args: argparse.Namespace, ctx: Context) -> int:
    """Check configuration, git wiring, and that Rally and Confluence are reachable."""
    from sre_maturity.commands import check
    return check.run(ctx)


def cmd_merge_db(args: argparse.Namespace, ctx: Context) -> int:
    """Git merge driver for sre_data.db (plumbing)."""
    from sre_maturity.git import merge
    return merge.run_merge_db(merge.DriverOptions.from_args(args), ctx)


def cmd_merge_matrix(args: argparse.Namespace, ctx: Context) -> int:
    """Git merge driver for sre_matrix.csv (plumbing)."""
    from sre_maturity.git import merge
    return merge.run_merge_matrix(merge.DriverOptions.from_args(args), ctx)


def cmd_dump(args: argparse.Namespace, ctx: Context) -> int:
    """Print a database as sorted readable text (git diff text-conversion; plumbing)."""
    from sre_maturity.git import merge
    ctx.data.write(merge.dump(Path(args.file)))
    return EXIT_OK


# ---------------------------------------------------------------------------- parser
def _at_least_one(text: str) -> int:
    """A count of 1 or more (``history --limit``): 0 or less is a usage error, not "all"."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1; give 1 or more (leave "
                                         "--limit out for every entry)")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("global options")
    g.add_argument("--data-dir", metavar="DIR", default=argparse.SUPPRESS,
                   help="data folder (default: $SRE_TRACKER_DATA_DIR, else the current folder)")
    g.add_argument("--env-file", metavar="FILE", default=argparse.SUPPRESS,
                   help="settings file (default: .env in the data folder; /dev/null: none)")
    g.add_argument("--no-commit", action="store_true", default=argparse.SUPPRESS,
                   help="do not commit to git (also SRE_TRACKER_GIT_COMMIT=false)")
    g.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                   help="more detail (setting sources, git commands); tracebacks on errors")
    g.add_argument("-q", "--quiet", action="count", default=argparse.SUPPRESS,
                   help="no progress, notices or summaries (the data asked for, a closed "
                        "gate's reasons and errors still show)")

    name = program_name()
    parser = argparse.ArgumentParser(
        prog=name, parents=[common],
        description="Track SRE maturity per asset and flow; turn gaps into Rally stories and "
                    "a Confluence to-do table; keep the history in git.",
        epilog=EPILOG_ENV,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(command: str, func, help_: str, examples: str, **kw) -> argparse.ArgumentParser:
        p = sub.add_parser(command, parents=[common], help=help_, description=help_,
                           epilog="examples:\n" + examples.replace(CLONE_NAME, name),
                           formatter_class=argparse.RawDescriptionHelpFormatter, **kw)
        p.set_defaults(func=func)
        return p

    p = add("setup", cmd_setup, "create or refresh the data folder (flows, model, database, git)",
            "  sre_tracker.py setup                      # prompts for flows and assets\n"
            "  sre_tracker.py setup --from-csv           # from flows.csv, maturity_model.csv,"
            " assessments.csv\n"
            "  sre_tracker.py setup --from-csv --dry-run # preview what a CSV change moves\n")
    p.add_argument("--from-csv", action="store_true",
                   help="non-interactive: import the CSVs present in the data folder")
    p.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    p.add_argument("--new-model", action="store_true",
                   help="interactive: replace an existing maturity_model.csv with the default")

    p = add("assess", cmd_assess, "guided assessment of an asset's capability; --auto: "
            "the checks of checks.csv answer what they can",
            "  sre_tracker.py assess                                  # menus\n"
            "  sre_tracker.py assess --asset payment-api --all         # every capability\n"
            "  sre_tracker.py assess --asset payment-api --capability 'Actionable alerts' \\\n"
            "      --answers yes,yes,no --notes 'pages go to #pay-oncall'\n"
            "  sre_tracker.py assess --asset search-indexer --capability 'On-call rotation' \\\n"
            "      --not-applicable 'batch job, no paging' --until 2027-06-30\n"
            "  sre_tracker.py assess --auto                            # run every check\n"
            "  sre_tracker.py assess --auto --flow Checkout --explain --dry-run\n"
            "  sre_tracker.py assess --auto --format junit > checks.xml  # for CI\n"
            "  sre_tracker.py assess --override pages-a-person --asset payment-api \\\n"
            "      --answer yes --reason 'alert moved to Opsgenie' --until 2027-03-01\n"
            "  sre_tracker.py assess --clear-override pages-a-person --asset payment-api\n")
    p.add_argument("--flow", help="flow to pick the asset from")
    p.add_argument("--asset", help="asset to assess")
    p.add_argument("--capability", help="capability to assess")
    p.add_argument("--all", action="store_true", help="walk every capability of the asset")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--answers", metavar="LIST",
                     help="answers in asking order until the first no, e.g. yes,yes,no")
    how.add_argument("--level", type=int, metavar="N", help="record level N (0-5) directly")
    how.add_argument("--not-applicable", metavar="REASON",
                     help="mark the capability Not Applicable for this asset")
    how.add_argument("--auto", action="store_true",
                     help="run the checks of checks.csv and record what they answer")
    how.add_argument("--override", metavar="CHECK",
                     help="record a person's answer to CHECK for --asset (with --answer, "
                          "--reason, optional --until; default expiry 90 days)")
    how.add_argument("--clear-override", metavar="CHECK",
                     help="lift the override of CHECK for --asset")
    p.add_argument("--until", metavar="DATE",
                   help="with --not-applicable or --override: expiry date")
    auto = p.add_argument_group("with --auto")
    auto.add_argument("--check", metavar="NAME", action="append",
                      help="only this check (repeatable)")
    auto.add_argument("--dry-run", action="store_true",
                      help="run the checks and show what would change; write nothing")
    auto.add_argument("--explain", action="store_true",
                      help="show each check's request (secrets masked) and what it saw")
    auto.add_argument("--format", choices=("table", "json", "junit"), default="table",
                      help="output: table (default), json or junit XML")
    auto.add_argument("--trust-commands", action="store_true",
                      help="run command checks without asking (for CI; also "
                           "SRE_TRACKER_TRUST_COMMANDS=1 in the environment, never from .env)")
    over = p.add_argument_group("with --override")
    over.add_argument("--answer", choices=("yes", "no"), help="the answer that stands")
    over.add_argument("--reason", help="why (required)")
    p.add_argument("--notes", help="notes or evidence")
    p.add_argument("--assessor", help="who assessed (default: git user.name, else login name)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    p = add("report", cmd_report, "write rally_import.csv and confluence_page.txt (--push: APIs)",
            "  sre_tracker.py report                    # offline: files only\n"
            "  sre_tracker.py report --include-amber    # Amber items to the CSV too\n"
            "  sre_tracker.py report --push             # create stories, update the page\n"
            "  sre_tracker.py report --cycle-time       # how long items take\n"
            "  sre_tracker.py generate-reports          # the same command, by its seed name\n",
            aliases=["generate-reports"])
    p.add_argument("--include-amber", action="store_true",
                   help="also Amber items (not required for go live) in rally_import.csv/push")
    p.add_argument("--output-dir", metavar="DIR", help="where to write (default: data folder)")
    p.add_argument("--push", action="store_true",
                   help="create the Rally stories and update the Confluence page")
    p.add_argument("--cycle-time", action="store_true",
                   help="print cycle times (median, p90) by flow, team and category")

    p = add("sync", cmd_sync, "pull story states from Rally, commit, update the Confluence page",
            "  sre_tracker.py sync\n"
            "  sre_tracker.py sync --dry-run\n"
            "  sre_tracker.py sync --from-csv rally_export.csv   # no API key needed\n")
    p.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    p.add_argument("--from-csv", metavar="EXPORT", help="states from a Rally CSV export")
    p.add_argument("--no-confluence", action="store_true", help="do not update the page")

    p = add("status", cmd_status, "show the matrix, weakest links per flow and open items",
            "  sre_tracker.py status\n"
            "  sre_tracker.py status --flow Checkout\n"
            "  sre_tracker.py status --asset payment-api\n"
            "  sre_tracker.py status --format json\n"
            "  sre_tracker.py status --as-of 2026-10-01\n")
    p.add_argument("--flow", help="only this flow")
    p.add_argument("--asset", help="only this asset (one line per capability)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--as-of", metavar="DATE|COMMIT", help="the matrix as it was (git history)")

    p = add("gate", cmd_gate, "go-live gate: exit 4 when go-live items are open or go-live "
            "capabilities are not assessed",
            "  sre_tracker.py gate --flow Checkout && deploy\n"
            "  sre_tracker.py gate --asset payment-api\n"
            "  sre_tracker.py gate --flow Checkout --allow-unassessed  # only open items\n")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--flow", help="every asset listed in this flow")
    which.add_argument("--asset", help="this asset only")
    p.add_argument("--allow-unassessed", action="store_true",
                   help="do not close the gate for go-live capabilities nobody assessed")

    p = add("history", cmd_history, "assessment history, newest first",
            "  sre_tracker.py history\n"
            "  sre_tracker.py history --asset payment-api --since 2026-10-01\n")
    p.add_argument("--asset")
    p.add_argument("--capability")
    p.add_argument("--since", metavar="DATE")
    p.add_argument("--limit", type=_at_least_one, metavar="N",
                   help="at most N entries (N >= 1)")

    p = add("export", cmd_export, "write the matrix (or --items) to CSV",
            "  sre_tracker.py export -o matrix.csv\n"
            "  sre_tracker.py export --items -o items.csv\n")
    p.add_argument("--items", action="store_true", help="every action item instead of the matrix")
    p.add_argument("-o", "--output", default="-", metavar="FILE", help="file (default: stdout)")

    add("check", cmd_check, "check settings, the CSVs, git wiring, and access to Rally, "
        "Confluence and the evidence sources",
        "  sre_tracker.py check\n")

    p = add("merge-db", cmd_merge_db, "plumbing: git merge driver for sre_data.db",
            "  (registered by setup as merge.sre-tracker.driver)\n")
    p.add_argument("base")
    p.add_argument("ours")
    p.add_argument("theirs")
    p = add("merge-matrix", cmd_merge_matrix, "plumbing: git merge driver for sre_matrix.csv",
            "  (registered by setup as merge.sre-tracker-matrix.driver)\n")
    p.add_argument("base")
    p.add_argument("ours")
    p.add_argument("theirs")
    p = add("dump", cmd_dump, "plumbing: print a database as sorted text (git diff textconv)",
            "  sre_tracker.py dump sre_data.db\n")
    p.add_argument("file")
    return parser


class _MaskingFormatter(logging.Formatter):
    """Log lines (and -v tracebacks) with every known secret hidden."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


@contextmanager
def _logging(verbosity: int) -> Iterator[None]:
    """Route the tool's log lines to stderr for one run, then put the logger back as it was
    (main() is also called as a library function, e.g. by tests)."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else \
        logging.DEBUG
    if verbosity < 0:
        level = logging.ERROR
    logger = logging.getLogger("sre_tracker")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_MaskingFormatter("sre_tracker: %(message)s"))
    logger.handlers = [handler]
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.handlers, logger.propagate = saved[0], saved[2]
        logger.setLevel(saved[1])  # setLevel, not assignment: it clears the enabled-for cache


def main(argv: list[str] | None = None) -> int:
    """Run one command; return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version exit 0, usage errors exit 2
        return int(exc.code or 0)
    verbosity = getattr(args, "verbose", 0) - getattr(args, "quiet", 0)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from sre_maturity.support.interrupts import as_interrupts

    with _logging(verbosity), as_interrupts():
        return _run(args, verbosity)


def _writes(args: argparse.Namespace) -> bool:
    """Does this command write in the data folder, without waiting for anyone (and so take
    its lock for the whole run)? Interactive setup and assess take it only to save and
    commit, never while a prompt waits; report writes only its own files without --push."""
    if args.command == "setup":
        return args.from_csv and not args.dry_run
    if args.command == "sync":
        return not args.dry_run
    if args.command in ("report", "generate-reports"):
        return args.push and not args.cycle_time
    if args.command == "assess":
        # --auto and the overrides take the lock themselves, only while they save: checks may
        # take minutes, and another assess must not wait for them.
        if args.auto or args.override or args.clear_override:
            return False
        from sre_maturity.commands.assessment import AssessOptions

        return AssessOptions.from_args(args).flag_outcome or not sys.stdin.isatty()
    return False


def _run(args: argparse.Namespace, verbosity: int) -> int:
    """Load the settings, run the command, turn a TrackerError into one line and its code."""
    ctx: Context | None = None
    try:
        import config

        settings = config.load(
            data_dir=getattr(args, "data_dir", None),
            env_file=getattr(args, "env_file", None),
            no_commit=getattr(args, "no_commit", False),
        )
        from sre_maturity.rules.views import write_matrix_file

        ctx = Context(settings, verbosity, rewrite_matrix=write_matrix_file)
        ctx.data_files = _data_files(args)
        for line in settings.describe():
            log.info("setting %s", line)
        if not _writes(args):
            return _dispatch(args, ctx)
        with ctx.writing():
            return _dispatch(args, ctx)
    except KeyboardInterrupt:
        print(f"\nsre_tracker: interrupted; nothing was written{_rally_note(args)}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except TrackerError as exc:
        if verbosity > 0:
            log.exception("details")
        from sre_maturity.render.reports import visible

        print(f"sre_tracker: error: {visible(mask_secrets(str(exc)))}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # e.g. `status | head`
        return EXIT_OK
    except (OSError, sqlite3.Error) as exc:
        if verbosity > 0:
            log.exception("details")
        text = _os_error_text(exc, ctx)
        if ctx is not None and ctx.pending_commit:
            # The database took the change before the failure: say so (the next writing
            # command commits it, writelock.py).
            text += ("; the change itself is saved in sre_data.db and the next sre-tracker "
                     "command commits it")
        print(f"sre_tracker: error: {mask_secrets(text)}", file=sys.stderr)
        return EXIT_ERROR
    except ModuleNotFoundError as exc:
        package = RUNTIME_PACKAGES.get((exc.name or "").partition(".")[0])
        if package is None:
            raise  # a module of the tool itself is missing: a broken install, show it all
        if verbosity > 0:
            log.exception("details")
        print(f"sre_tracker: error: the Python package {package} is not installed; run "
              "python3 -m pip install -r requirements.txt in the sre-tracker folder (or "
              "install the tool with pipx install .)", file=sys.stderr)
        return EXIT_ERROR


def _dispatch(args: argparse.Namespace, ctx: Context) -> int:
    """Run the command's handler; a Ctrl-C after the database changed finishes the commit."""
    try:
        return args.func(args, ctx)
    except KeyboardInterrupt:
        if not (ctx.pending_commit or ctx.committed):
            raise
        with ctx.writing():
            said = _finish_interrupted(args, ctx)
        print(f"\nsre_tracker: {said}", file=sys.stderr)
        return EXIT_INTERRUPTED


def _data_files(args: argparse.Namespace) -> list[str]:
    """The files a writing command commits (and an interrupted run's leftover commit takes)."""
    from database import DB_FILE, MATRIX_FILE
    from sre_maturity.store.sources import SETUP_FILES

    files = [DB_FILE, MATRIX_FILE]
    if args.command == "setup":
        files += SETUP_FILES
    return files


def _rally_note(args: argparse.Namespace) -> str:
    """What an interrupted push adds: a create may have reached Rally, its answer unread."""
    if not getattr(args, "push", False):
        return ""
    return ("; Rally may hold stories created just before the interrupt: the next "
            "report --push adopts them by their item keys, it never creates them twice")


def _finish_interrupted(args: argparse.Namespace, ctx: Context) -> str:
    """After a Ctrl-C: commit what the database already holds, then say truly what was kept."""
    from database import DB_FILE
    from sre_maturity.support import interrupts

    before = len(ctx.committed)
    if ctx.pending_commit:
        try:
            with interrupts.deferred():
                ctx.commit(ctx.data_files, f"{args.command}: changes saved before an interrupt")
        except KeyboardInterrupt:
            pass  # a second Ctrl-C during the commit: it was finished all the same
        except TrackerError as exc:
            return f"interrupted; the change is saved in {DB_FILE}, but {exc}"
        if len(ctx.committed) == before and not ctx.settings.commit:
            return "interrupted; the change saved before the interrupt is kept (not committed)"
    rally = _rally_note(args)
    if ctx.committed:
        return (f"interrupted; the change saved before the interrupt is committed "
                f"({ctx.committed[-1]}); nothing more was written" + rally)
    return "interrupted; nothing was written" + rally


def _os_error_text(exc: OSError | sqlite3.Error, ctx: Context | None) -> str:
    """One line for an OS or SQLite error: what failed, on which path, what to check."""
    if isinstance(exc, sqlite3.Error):
        path = ctx.db_path() if ctx is not None else "sre_data.db"
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, (
                sqlite3.OperationalError, sqlite3.IntegrityError, sqlite3.ProgrammingError)):
            # Corruption found while reading (the open-time check runs once per file version).
            return (f"{path} is damaged ({exc}); restore it from git "
                    f"(git checkout -- {Path(path).name}) or move it away")
        from sre_maturity.store import schema

        if schema.in_use(exc):
            return schema.in_use_text(Path(path))
        if "full" in str(exc).lower():
            return f"{path}: the disk is full ({exc}); free some disk space and run again"
        return (f"{path}: {exc}; check that the file and its folder are writable by you "
                "(and not on a read-only disk)")
    path = exc.filename or "?"
    reason = exc.strerror or type(exc).__name__
    hint = {errno.EACCES: "check its permissions", errno.EPERM: "check its permissions",
            errno.EROFS: "the disk is read-only", errno.ENOSPC: "free some disk space",
            errno.EISDIR: "a folder is in the way of a file",
            errno.ENOENT: "check that the folder exists"}.get(exc.errno or 0, "")
    return f"{path}: {reason}" + (f"; {hint}" if hint else "")


def cli() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    cli()


__all__ = ["main", "cli", "build_parser", "EXIT_ERROR"]
