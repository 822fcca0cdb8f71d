"""The real Waldur site agent in report mode, with its SLURM plugin over the SLURM emulator, against a
live `ledger serve`: what it reports is what the emulator's accounting says, after its unit factors.

The agent, its plugin and the emulator live in a virtual environment of their own (the agent pins
another waldur-api-client than the tests use), made once under .cache/ and reused.
"""

import datetime as dt
import json
import os
import subprocess
import sys
import venv
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest
from waldur_api_client import AuthenticatedClient
from waldur_api_client.api.marketplace_component_usages import marketplace_component_usages_list as list_usages
from waldur_api_client.api.marketplace_component_user_usages import (
    marketplace_component_user_usages_list as list_user_usages,
)
from waldur_api_client.api.marketplace_site_agent_identities import marketplace_site_agent_identities_list

from ledger.database import Ledger

from .world import token

AGENT_PACKAGES = ("waldur-site-agent==1.0.7", "waldur-site-agent-slurm==1.0.7", "slurm-emulator==0.9.10")
AGENT_ENV = Path(__file__).resolve().parent.parent / ".cache" / "site-agent"
DRIVER = Path(__file__).resolve().parent / "site_agent_driver.py"

PROVIDER, CLIENT = "1a000000000000000000000000000001", "1a000000000000000000000000000002"
PROJECT, OFFERING = "1b000000000000000000000000000001", "1c000000000000000000000000000001"
CLIMATE, GENOMICS, RETIRED = ("1d000000000000000000000000000001", "1d000000000000000000000000000002",
                              "1d000000000000000000000000000003")
BACKEND_IDS = {CLIMATE: "hpc_climate", GENOMICS: "hpc_genomics", RETIRED: "hpc_retired"}
# SLURM TRES -> factor from its accounting units (CPU-minutes, MB-minutes) to the component's (hours, GB-hours).
UNIT_FACTORS = {"cpu": 60, "mem": 61440}
INJECTED = [["hpc_climate", "alice", 10], ["hpc_climate", "bob", 2.5], ["hpc_genomics", "alice", 1],
            ["hpc_retired", "bob", 4]]


@pytest.fixture
def now(monkeypatch):
    """The agent reports at the wall clock's time, so the ledger keeps it too."""
    monkeypatch.delenv("LEDGER_NOW", raising=False)


@pytest.fixture
def catalog():
    plan = lambda n: [{"uuid": f"1e00000000000000000000000000000{n}", "start": "2025-01-01T00:00:00Z"}]  # noqa: E731
    resource = lambda uuid, name, state, n: {  # noqa: E731
        "uuid": uuid, "name": name, "offering_uuid": OFFERING, "project_uuid": PROJECT, "state": state,
        "backend_id": BACKEND_IDS[uuid], "plan_periods": plan(n),
    }
    return {
        "users": [{"id": 1, "username": "staff", "token": token("staff"), "is_staff": True},
                  {"id": 2, "username": "provider-owner", "token": token("provider-owner")}],
        "customers": [{"uuid": PROVIDER, "name": "Provider Org"}, {"uuid": CLIENT, "name": "Client Org"}],
        "projects": [{"uuid": PROJECT, "name": "Science", "customer_uuid": CLIENT}],
        "offerings": [{"uuid": OFFERING, "name": "HPC", "customer_uuid": PROVIDER, "components": [
            {"type": "cpu", "name": "CPU", "measured_unit": "hours", "billing_type": "usage"},
            {"type": "mem", "name": "Memory", "measured_unit": "GB-hours", "billing_type": "usage"},
        ]}],
        "offering_users": [
            {"uuid": "1f000000000000000000000000000001", "offering_uuid": OFFERING, "username": "alice"},
            {"uuid": "1f000000000000000000000000000002", "offering_uuid": OFFERING, "username": "bob"},
        ],
        "resources": [resource(CLIMATE, "climate", "OK", 1), resource(GENOMICS, "genomics", "OK", 2),
                      resource(RETIRED, "retired", "Terminated", 3)],
        "roles": [{"username": "provider-owner", "scope": "customer", "scope_uuid": PROVIDER, "role": "owner"}],
    }


@pytest.fixture(scope="session")
def agent_bin() -> Path:
    """The bin directory of a virtual environment with the site agent, its SLURM plugin and the emulator."""
    marker = AGENT_ENV / "installed.txt"
    if not marker.exists() or marker.read_text() != "\n".join(AGENT_PACKAGES):
        venv.create(AGENT_ENV, with_pip=True, clear=True)
        subprocess.run([AGENT_ENV / "bin" / "python", "-m", "pip", "install", "-q", *AGENT_PACKAGES], check=True)
        marker.write_text("\n".join(AGENT_PACKAGES))
    return AGENT_ENV / "bin"


@pytest.fixture
def emulator_env(tmp_path) -> dict:
    """The environment of the agent and the emulator: the emulator's state in tmp_path, its clock the wall clock."""
    return {**os.environ, "SLURM_EMULATOR_STATE_FILE": str(tmp_path / "slurm.json"),
            "SLURM_EMULATOR_TIME_FILE": str(tmp_path / "slurm-time.json"), "SLURM_EMULATOR_TIME_FOLLOW_WALL": "1"}


@pytest.fixture
def agent_config(tmp_path, live_server, agent_bin) -> Path:
    """The agent's configuration for the offering, as its provider's owner (JSON is YAML)."""
    components = {
        "cpu": {"measured_unit": "hours", "unit_factor": UNIT_FACTORS["cpu"], "accounting_type": "usage", "label": "CPU"},
        "mem": {"measured_unit": "GB-hours", "unit_factor": UNIT_FACTORS["mem"], "accounting_type": "usage",
                "label": "Memory"},
    }
    path = tmp_path / "agent-config.yaml"
    path.write_text(json.dumps({
        "timezone": "UTC",
        "offerings": [{
            "name": "HPC", "waldur_api_url": f"{live_server}/api/", "waldur_api_token": token("provider-owner"),
            "waldur_offering_uuid": OFFERING, "backend_type": "slurm", "reporting_backend": "slurm",
            "backend_settings": {"slurm_bin_path": str(agent_bin), "default_account": "root", "customer_prefix": "c_",
                                 "project_prefix": "p_", "allocation_prefix": "a_"},
            "backend_components": components,
        }],
    }))
    return path


def run(agent_bin: Path, env: dict, *args: str) -> str:
    done = subprocess.run([agent_bin / "python", DRIVER, *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def emulated_usage(agent_bin: Path, env: dict) -> dict:
    """(account, username) -> component -> usage, from the emulator's sacct for this month, after the unit factors:
    each job's requested TRES times its elapsed minutes (memory in MB), over the component's factor."""
    start = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-01T00:00:00")
    lines = subprocess.run(
        [agent_bin / "sacct", "--parsable2", "--noheader", "--noconvert", "--allocations", "--allusers",
         f"--starttime={start}", "--endtime=now", "--accounts=" + ",".join(BACKEND_IDS.values()),
         "--format=Account,ReqTRES,Elapsed,User"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    usage: dict = defaultdict(lambda: defaultdict(Decimal))
    for line in lines:
        account, tres, elapsed, username = line.split("|")
        hours, minutes, seconds = (int(part) for part in elapsed.split(":"))
        elapsed_minutes = Decimal(hours * 3600 + minutes * 60 + seconds) / 60
        requested = dict(pair.split("=", 1) for pair in tres.split(","))
        for name, factor in UNIT_FACTORS.items():
            amount = Decimal(requested[name].removesuffix("M"))
            usage[(account, username)][name] += amount * elapsed_minutes / factor
    return usage


def expected_records(usage: dict, backend_id: str) -> dict:
    totals: dict = defaultdict(Decimal)
    for (account, _), components in usage.items():
        if account == backend_id:
            for name, amount in components.items():
                totals[name] += amount
    return {name: f"{amount:.2f}" for name, amount in totals.items()}


def expected_user_usages(usage: dict, backend_id: str) -> dict:
    return {
        (name, username): f"{amount:.2f}"
        for (account, username), components in usage.items() if account == backend_id
        for name, amount in components.items()
    }


def events_of_reports(db_path: str) -> list[str]:
    """The types of the events in the log but the clock's (a month may start meanwhile)."""
    ledger = Ledger(db_path)
    try:
        return [event.type for event in ledger.store.read(after=0) if event.type != "BillingPeriodStarted"]
    finally:
        ledger.close()


def test_the_site_agent_reports_the_emulators_usage_once(live_server, db_path, agent_bin, agent_config, emulator_env):
    run(agent_bin, emulator_env, "inject", json.dumps(INJECTED))
    log = run(agent_bin, emulator_env, "cycle", str(agent_config))
    usage = emulated_usage(agent_bin, emulator_env)
    assert expected_records(usage, "hpc_climate") == {"cpu": "800.00", "mem": "6400.00"}  # the injected node-hours

    with AuthenticatedClient(base_url=live_server, token=token("staff")) as staff:
        for resource in (CLIMATE, GENOMICS):
            records = list_usages.sync_all(client=staff, resource_uuid=UUID(resource))
            assert {r.type_: r.usage for r in records} == expected_records(usage, BACKEND_IDS[resource]), log
            user_usages = list_user_usages.sync_all(client=staff, resource_uuid=UUID(resource))
            assert {(u.component_type, u.username): u.usage for u in user_usages} == expected_user_usages(
                usage, BACKEND_IDS[resource]
            ), log
            for user_usage in user_usages:  # the agent linked each to its offering user, and the link resolves
                assert staff.get_httpx_client().get(user_usage.user).json()["username"] == user_usage.username
        assert list_usages.sync_all(client=staff, resource_uuid=UUID(RETIRED)) == []
        (identity,) = marketplace_site_agent_identities_list.sync(client=staff, name=f"agent-{OFFERING}")
        assert [service.name for service in identity.services] == ["report"]

    verified = subprocess.run([sys.executable, "-m", "ledger", "--db", db_path, "verify"], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    reported = events_of_reports(db_path)
    assert {"UsageReported", "UserUsageReported", "AgentIdentityRegistered"} <= set(reported)
    run(agent_bin, emulator_env, "cycle", str(agent_config))
    assert events_of_reports(db_path) == reported  # the same figures and registration again append nothing
