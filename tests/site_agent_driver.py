"""Drives the real Waldur site agent and its SLURM emulator; run with the agent's own Python by
tests/test_site_agent.py (this interpreter has neither installed).

    python site_agent_driver.py inject '[["account", "user", node_hours], ...]'
    python site_agent_driver.py cycle CONFIG_FILE
"""

import json
import sys


def inject(usages: list) -> None:
    """Records usage in the emulator's accounting database, at the emulator's clock (the wall clock)."""
    from emulator.core.database import SlurmDatabase
    from emulator.core.time_engine import TimeEngine
    from emulator.core.usage_simulator import UsageSimulator

    simulator = UsageSimulator(TimeEngine(), SlurmDatabase())
    for account, user, node_hours in usages:
        simulator.inject_usage(account, user, node_hours)


def cycle(config_file: str) -> None:
    """One report cycle of every offering in the configuration: what the agent in report mode does
    every 30 minutes."""
    from waldur_site_agent.common import utils
    from waldur_site_agent.polling_processing import agent_report

    configuration = utils.load_configuration(config_file, user_agent_suffix="report")
    configuration.waldur_site_agent_mode = "report"
    agent_report._process_offerings(configuration, {})


if __name__ == "__main__":
    if sys.argv[1] == "inject":
        inject(json.loads(sys.argv[2]))
    else:
        cycle(sys.argv[2])
