"""History tools over the log, for operators (the `ledger` command) and the API: verify it, audit a
resource, replay it to a point, export and import it; one module each.

Each tool takes `progress`, a factory of progress bars (progress.py); the default shows nothing.
The live views are only ever read here: whatever is rebuilt is rebuilt in a scratch database
that is thrown away afterwards (scratch.py).
"""

from ledger.history.audit import AuditEntry, audit, record_events
from ledger.history.export import export
from ledger.history.imports import Imported, ImportRefused, import_log
from ledger.history.progress import Progress, Quiet
from ledger.history.replay import replay
from ledger.history.verify import TableDifference, Verification, verify

__all__ = [
    "AuditEntry", "ImportRefused", "Imported", "Progress", "Quiet", "TableDifference", "Verification",
    "audit", "export", "import_log", "record_events", "replay", "verify",
]
