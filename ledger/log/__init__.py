"""The log's kernel, the same for every backend: its records, its hash chain, and the event store's contract."""
