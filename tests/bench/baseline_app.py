"""Minimal Flask endpoints that the HTTP benchmark compares the ledger against.

`POST /insert` parses the same JSON body as set_usage and inserts one row into SQLite
(same pragmas as the ledger), or, when BASELINE_DB is a `postgresql://` URL, into that
PostgreSQL database through psycopg (autocommit, durable commits as the ledger's);
`GET /records` returns a bare JSON array of ten records shaped like usage records. Served by
gunicorn with the ledger's settings:

    BASELINE_DB=/tmp/baseline.db gunicorn -w 4 -k gthread --threads 2 tests.bench.baseline_app:app
"""

import os
import sqlite3
import threading

import psycopg
from flask import Flask, jsonify, request

from ledger.backends.sqlite.connection import BUSY_TIMEOUT_SECONDS

app = Flask(__name__)
local = threading.local()

RECORD = {
    "uuid": "8059cfa238a6505694ac9189e9c292c9", "created": "2026-11-26T11:11:28.761090Z", "description": "",
    "type": "cpu", "name": "CPU hours", "measured_unit": "h", "usage": "12.50", "date": "2026-11-26T11:11:28Z",
    "recurring": False, "missing_usage_policy": "none", "resource_name": "alloc-01",
    "resource_uuid": "7a8b9c0d1e2f4d7ec05b6c7d8e9f0a1b", "offering_name": "HPC",
    "offering_uuid": "5e6f7a8b9c0d4b5cae3f4a5b6c7d8e9f", "project_name": "Climate",
    "project_uuid": "3c4d5e6f7a8b493aac1d2e3f4a5b6c7d", "customer_name": "Client Org",
    "customer_uuid": "1a2b3c4d5e6f47188a9b0c1d2e3f4a5b", "billing_period": "2026-11-01", "modified_by": 1,
}


def connection() -> sqlite3.Connection | psycopg.Connection:
    if getattr(local, "conn", None) is None and os.environ["BASELINE_DB"].startswith("postgresql://"):
        conn = psycopg.connect(os.environ["BASELINE_DB"], autocommit=True, options="-c synchronous_commit=on")
        with conn.transaction():  # workers starting together would race to create the table
            conn.execute("SELECT pg_advisory_xact_lock(1)")
            conn.execute("CREATE TABLE IF NOT EXISTS reports (id BIGSERIAL PRIMARY KEY, body TEXT)")
        local.conn = conn
    elif getattr(local, "conn", None) is None:
        conn = sqlite3.connect(os.environ["BASELINE_DB"], timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        sync = "NORMAL" if os.environ.get("LEDGER_SYNC", "full").lower() == "normal" else "FULL"
        conn.execute(f"PRAGMA synchronous={sync}")
        conn.execute("CREATE TABLE IF NOT EXISTS reports (id INTEGER PRIMARY KEY, body TEXT)")
        local.conn = conn
    return local.conn


@app.post("/insert")
def insert():
    body = request.get_json()
    conn = connection()
    if isinstance(conn, psycopg.Connection):
        conn.execute("INSERT INTO reports (body) VALUES (%s)", (str(body["usages"]),))
        return "", 201
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO reports (body) VALUES (?)", (str(body["usages"]),))
    conn.execute("COMMIT")
    return "", 201


@app.get("/records")
def records():
    return jsonify([RECORD] * 10)
