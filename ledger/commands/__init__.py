"""Commands: each loads what its decision needs from the views, decides with the rules, and writes
through the Ledger (usage reports, site-agent registrations, tokens, the catalog file, idempotency keys)."""
