"""The agent's settings, loaded in a short-lived child process so that pydantic never loads here.

Checking a settings file takes pydantic, pydantic-settings and PyYAML (`pgha.settings_load`):
about 11 MiB that would stay resident in the agent for months to be used once. So the
agent forks a child that loads and checks the file and the environment, sends the result
back over a pipe as JSON, and exits; the agent rebuilds the settings objects from that
(`pgha.settings_plain`). The secrets cross a pipe that only these two processes hold.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

from pgha.errors import ConfigError
from pgha.settings import Settings
from pgha.settings_plain import from_plain, plain


def load_settings_apart(config: Path) -> Settings:
    """What `pgha.settings_load.load_settings(config)` returns, without loading pydantic
    into this process; raises ConfigError exactly as it does."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        _load_and_send(config, write_end)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read()
    _, status = os.waitpid(child, 0)
    return settings_from_answer(answer, os.waitstatus_to_exitcode(status), config)


def _load_and_send(config: Path, pipe_fd: int) -> NoReturn:
    """The child: load, answer on the pipe, and leave without running the parent's exit
    handlers or flushing its buffers a second time."""
    code = 0
    try:
        from pgha.settings_load import load_settings  # noqa: PLC0415 - the point of the child

        message: dict[str, Any]
        try:
            message = {"settings": plain(load_settings(config), reveal_secrets=True)}
        except ConfigError as exc:
            message = {"problems": exc.problems}
        with os.fdopen(pipe_fd, "wb") as pipe:
            pipe.write(json.dumps(message).encode())
    except BaseException:
        traceback.print_exc(file=sys.stderr)
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)


def settings_from_answer(answer: bytes, exit_code: int, config: Path) -> Settings:
    """The settings a loader child sent, or its problems raised as ConfigError."""
    if not answer:
        raise ConfigError(
            [
                f"{config}: the settings loader ended without an answer (exit code "
                f"{exit_code}); the error it printed is above"
            ]
        )
    message = json.loads(answer)
    if "problems" in message:
        raise ConfigError(message["problems"])
    return from_plain(Settings, message["settings"])


if __name__ == "__main__":  # the loader `pgha.adapters.settings_reload` runs afresh
    _load_and_send(Path(sys.argv[1]), sys.stdout.fileno())
