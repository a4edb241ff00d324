"""Running the operator's text editor on a file (for `pgha config edit`)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from pgha.errors import PghaError


class EditorFailed(PghaError):
    """The editor could not be started or exited with an error."""


def open_in_editor(editor: str, path: Path) -> None:
    """Run `editor` (a command line, as git reads $EDITOR) on `path` and wait for it."""
    command = [*shlex.split(editor), str(path)]
    try:
        done = subprocess.run(command, check=False)
    except OSError as exc:
        raise EditorFailed(f"cannot start the editor {editor!r}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        raise EditorFailed(f"the editor {editor!r} exited with {done.returncode}")
