"""Test suites a storage backend subclasses: each names the fixtures and hooks a backend provides."""
