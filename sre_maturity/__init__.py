"""The sre-tracker package: everything but the design card's four top-level modules.

The folders are the layers, and imports point one way, down this list:

- ``commands/``: one module per command, each with ``run(options, ctx)``;
- ``render/``: the texts and pages (to-do table, wiki markup, storage format, stories, heatmap);
- ``rules/``: the maturity rules as pure functions (``maturity``) and the read model (``views``);
- ``clients/``: the thin HTTP clients (Rally, Confluence) and their shared retry policy;
- ``store/``: the schema and migrations, the CSV files, the import into the database;
- ``git/``: git in the data folder, the merge drivers and the diff text-conversion;
- ``support/``: errors, the command context, prompts, names, locks and interrupts.

It imports nothing itself, so ``sre_tracker.py --help`` stays fast.
"""

from pathlib import Path

# Where the design card's modules (sre_tracker.py, ...) and, in a clone, maturity_model.csv sit:
# the folder that holds this package (the clone's root, or site-packages when installed).
HOME = Path(__file__).resolve().parent.parent
