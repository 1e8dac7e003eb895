"""Generate large data folders for the benchmark: N assets x 60 capabilities, assessed."""

from __future__ import annotations

import csv
import random
from pathlib import Path

CATEGORIES = 12
CAPS_PER_CATEGORY = 5


LONG = ("The service owner shows, with links to the dashboards, runbooks and the last review "
        "notes, that this holds for every production region and every dependency the asset "
        "calls; exceptions are written down with an owner, a date and the risk accepted. ")


MODEL_HEADER = ["Category", "Capability", "Level", "Criteria", "Question", "Owner", "Priority",
                "Required for Go Live", "Target Milestone"]
FLOWS_HEADER = ["Flow", "Asset Name", "Team", "Target Level"]
ASSESSMENTS_HEADER = ["Asset Name", "Capability", "Level", "Assessed By", "Assessed At"]


def _writer(fh, header: list[str]):
    """A CSV writer on ``fh`` that has written ``header``."""
    w = csv.writer(fh)
    w.writerow(header)
    return w


def write_folder(folder: Path, assets: int, seed: int = 7, *, low_levels: bool = False,
                 long_texts: bool = False) -> None:
    """flows.csv, maturity_model.csv and assessments.csv for ``assets`` assets.

    ``low_levels``: every cell assessed at 0 or 1 (many more open items); ``long_texts``:
    criteria and questions of a few hundred characters.
    """
    rng = random.Random(seed)
    extra = LONG * 2 if long_texts else ""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "maturity_model.csv", "w", newline="", encoding="utf-8") as fh:
        w = _writer(fh, MODEL_HEADER)
        for c in range(CATEGORIES):
            for k in range(CAPS_PER_CATEGORY):
                cap = f"Capability {c:02d}-{k}"
                for lv in range(1, 6):
                    w.writerow([f"Category {c:02d}", cap, lv, f"{cap} criteria {lv}{extra}",
                                f"Is {cap} at level {lv}?{extra}", "Asset", "",
                                "Yes" if lv <= 2 else "No", "Go-Live" if lv <= 2 else ""])
    flows = [f"Flow {i:02d}" for i in range(max(2, assets // 25))]
    with open(folder / "flows.csv", "w", newline="", encoding="utf-8") as fh:
        w = _writer(fh, FLOWS_HEADER)
        for a in range(assets):
            name = f"asset-{a:05d}"
            w.writerow([flows[a % len(flows)], name, f"team-{a % 40}", rng.randint(2, 4)])
            if a % 10 == 0:  # some assets sit in two flows
                w.writerow([flows[(a + 1) % len(flows)], name, f"team-{a % 40}", 3])
    with open(folder / "assessments.csv", "w", newline="", encoding="utf-8") as fh:
        w = _writer(fh, ASSESSMENTS_HEADER)
        for a in range(assets):
            for c in range(CATEGORIES):
                for k in range(CAPS_PER_CATEGORY):
                    if rng.random() < 0.9:
                        w.writerow([f"asset-{a:05d}", f"Capability {c:02d}-{k}",
                                    rng.randint(0, 1 if low_levels else 5), "bench",
                                    "2026-10-01"])


def write_push_folder(folder: Path, red_items: int = 500, assets: int = 10) -> None:
    """A data folder whose ``report --push`` creates exactly ``red_items`` stories.

    Every asset has target level 2 (= the go-live level of the generated model), so a cell
    assessed at level 1 yields one Red item (level 2) and a cell at level 5 none; Amber items,
    which ``report --push`` leaves alone without ``--include-amber``, do not occur.
    """
    cells = assets * CATEGORIES * CAPS_PER_CATEGORY
    if red_items > cells:
        raise ValueError(f"{red_items} Red items need more than {assets} assets")
    write_folder(folder, assets)  # the model (and files to overwrite)
    with open(folder / "flows.csv", "w", newline="", encoding="utf-8") as fh:
        w = _writer(fh, FLOWS_HEADER)
        for a in range(assets):
            w.writerow([f"Flow {a % 2:02d}", f"asset-{a:05d}", f"team-{a % 4}", 2])
    with open(folder / "assessments.csv", "w", newline="", encoding="utf-8") as fh:
        w = _writer(fh, ASSESSMENTS_HEADER)
        n = 0
        for a in range(assets):
            for c in range(CATEGORIES):
                for k in range(CAPS_PER_CATEGORY):
                    w.writerow([f"asset-{a:05d}", f"Capability {c:02d}-{k}",
                                1 if n < red_items else 5, "bench", "2026-10-01"])
                    n += 1


CRITERIA_WORDS = ("the on-call engineer can show it in the tool", "every region is covered",
                  "it was reviewed this quarter", "the runbook links to it",
                  "a dashboard panel proves it", "exceptions have an owner")


def write_unlike_folder(folder: Path, assets: int, seed: int = 11) -> None:
    """A large organisation shaped unlike :func:`write_folder` (issue 27's held-out data):
    criteria of about 60 characters, every cell assessed, levels skewed low so that some
    1.7 items are open per cell (about 200,000 at 2,000 assets), 40 assets a flow, targets
    2 to 5."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    caps = [(f"Pillar {c + 1:02d} practice", f"Practice {c + 1:02d}.{k + 1} review")
            for c in range(CATEGORIES) for k in range(CAPS_PER_CATEGORY)]
    with open(folder / "maturity_model.csv", "w", newline="", encoding="utf-8") as fh:
        w = _writer(fh, MODEL_HEADER)
        for n, (category, cap) in enumerate(caps):
            for lv in range(1, 6):
                words = CRITERIA_WORDS[(n + lv) % len(CRITERIA_WORDS)]
                criteria = f"L{lv}: {cap.lower()} holds and {words}"[:64]
                w.writerow([category, cap, lv, criteria, f"Does {cap.lower()} hold at L{lv}?",
                            ("Asset", "SRE", "Support")[(n + lv) % 3], "",
                            "Yes" if lv <= 2 and n % 3 else "No",
                            "Go-Live" if lv <= 2 else f"2027-Q{1 + lv % 4}"])
    flows = [f"Value stream {i:03d}" for i in range(max(2, assets // 40))]
    with open(folder / "flows.csv", "w", newline="", encoding="utf-8") as fh:
        w = _writer(fh, FLOWS_HEADER)
        for a in range(assets):
            name = f"svc-{a:05d}-api"
            w.writerow([flows[a % len(flows)], name, f"squad-{a % 90}", rng.randint(2, 5)])
    with open(folder / "assessments.csv", "w", newline="", encoding="utf-8") as fh:
        w = _writer(fh, ASSESSMENTS_HEADER)
        for a in range(assets):
            for _category, cap in caps:
                w.writerow([f"svc-{a:05d}-api", cap, rng.choice((0, 1, 1, 1, 2, 2, 3, 4, 5)),
                            "bench", "2026-10-01"])
