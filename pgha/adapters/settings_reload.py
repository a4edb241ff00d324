"""The agent's settings file, loaded again in a new interpreter (fork and exec).

At start the agent forks a child to load its settings (`pgha.settings_handoff`). On SIGHUP
it already runs threads, and a forked child could inherit a lock one of them holds; so the
same loader runs as `python -m pgha.settings_handoff FILE` and prints its answer instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pgha.errors import ConfigError
from pgha.settings import Settings
from pgha.settings_handoff import settings_from_answer


def load_settings_fresh(config: Path, *, timeout_seconds: float = 60.0) -> Settings:
    """What `pgha.settings_load.load_settings(config)` returns, loaded in a new interpreter;
    raises ConfigError as it does. The loader's own error output goes to our stderr."""
    command = [sys.executable, "-m", "pgha.settings_handoff", str(config)]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout_seconds, check=False)
    except subprocess.TimeoutExpired:
        raise ConfigError(
            [f"{config}: loading the settings took more than {timeout_seconds:g} s"]
        ) from None
    sys.stderr.write(done.stderr.decode(errors="replace"))
    return settings_from_answer(done.stdout, done.returncode, config)
