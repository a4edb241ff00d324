"""`pgha config edit`: the dynamic configuration as YAML in the operator's editor.

The same rules as `config set` (pgha/cli_ops.py): every value converted and checked by
pgha/dynamic_config.py, unknown keys refused, the timers checked together, the diff shown,
and the write a compare-and-set on the revision read, so a change made meanwhile by someone
else is never overwritten. Keys cannot be removed: an agent keeps its last value for a key
that disappears, which would make `config show` lie.

Whenever nothing was written although the operator edited something (bad YAML, a bad value,
a concurrent change, etcd unreachable), the temporary file is kept and its path printed:
an operator's edits are never thrown away.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from pgha.adapters.editor import EditorFailed, open_in_editor
from pgha.adapters.store import CONFIG
from pgha.cli_ops import EXIT_REFUSED, Echo, read_config
from pgha.cli_target import EXIT_ETCD_UNREACHABLE, ClusterTarget
from pgha.dynamic_config import KEYS, diff, parse_assignment, validate
from pgha.errors import PghaError

RunEditor = Callable[[Path], None]
"""Opens the file in an editor and returns when the operator is done; raises EditorFailed."""


class EditRefused(ValueError):
    """The edited document cannot be written; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


# --- pure: the document and its validation -------------------------------------------------


def render_document(config: Mapping[str, Any], cluster: str, revision: int) -> str:
    """The YAML the operator edits: a comment naming every settable key, then the values."""
    header = [
        f"# The dynamic configuration of cluster {cluster!r} (etcd revision {revision}).",
        "# Change values and save; nothing is written before you confirm the diff.",
        "# The timers are checked together: loop_wait + 2 * retry_timeout + safety_margin <= ttl.",
        "# Keys can be added or changed, not removed. The keys:",
        *(f"#   {key}: {meaning}" for key, (_, meaning) in sorted(KEYS.items())),
    ]
    body = yaml.safe_dump(dict(config), sort_keys=True, default_flow_style=False)
    return "\n".join(header) + "\n" + body


def edited_config(before: Mapping[str, Any], text: str) -> dict[str, Any]:
    """The config the edited `text` asks for, checked as `config set` checks it.

    Unchanged keys keep their stored value as is; changed and added ones are converted by
    the key's own parser. Raises EditRefused naming every bad key at once.
    """
    document = _load(text)
    problems: list[str] = []
    after: dict[str, Any] = {}
    for key, value in document.items():
        if key in before and _same(before[key], value):
            after[key] = before[key]
        elif not isinstance(key, str) or key not in KEYS:
            problems.append(f"unknown key {key!r}; known keys: {', '.join(sorted(KEYS))}")
        else:
            try:
                after[key] = parse_assignment(f"{key}={_as_text(value)}")[1]
            except ValueError as exc:
                problems.append(str(exc))
    problems.extend(
        f"{key} was removed: keys can be changed, not removed (agents would keep their "
        f"last value); put it back, e.g. {key}: {_as_text(before[key])}"
        for key in before
        if key in KEYS and key not in document
    )
    if not problems:
        try:
            validate(after)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise EditRefused(problems)
    return after


def _load(text: str) -> dict[Any, Any]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise EditRefused([f"not valid YAML{where}: {problem}"]) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise EditRefused([f"expected KEY: VALUE lines (a YAML mapping), found a {kind}"])
    return document


def _same(stored: Any, edited: Any) -> bool:
    """Equal and of the same kind (YAML's `true` equals 1 in Python; not here)."""
    return isinstance(stored, bool) == isinstance(edited, bool) and stored == edited


def _as_text(value: Any) -> str:
    """A YAML value as `config set` would have received it on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


# --- the command ----------------------------------------------------------------------------


def choose_editor(environ: Mapping[str, str]) -> str:
    """$VISUAL, then $EDITOR, then Debian's `editor` alternative, then vi."""
    for name in ("VISUAL", "EDITOR"):
        command = environ.get(name, "").strip()
        if command:
            return command
    return "editor" if shutil.which("editor") else "vi"


def run_editor(path: Path) -> None:
    """Open `path` in the operator's editor (a command line, as git reads $EDITOR)."""
    open_in_editor(choose_editor(os.environ), path)


def edit_config(
    target: ClusterTarget,
    *,
    confirm: Callable[[str], bool],
    echo: Echo,
    editor: RunEditor = run_editor,
) -> int:
    """Edit, check, show the diff, confirm, and write on the revision read.

    Exit 0 when written or unchanged, 1 when refused, cancelled or changed meanwhile, 2 when
    etcd cannot be read or the write's outcome is unknown.
    """
    current = read_config(target, echo)
    if isinstance(current, int):
        return current
    before, revision = current
    path = _write_temp(render_document(before, target.cluster, revision))
    kept = f"your edits are kept in {path}"
    try:
        editor(path)
        after = edited_config(before, path.read_text())
    except EditorFailed as exc:
        echo(f"config not changed: the editor failed ({exc}); {kept}", err=True)
        return EXIT_REFUSED
    except EditRefused as exc:
        for problem in exc.problems:
            echo(f"config not changed: {problem}", err=True)
        echo(f"{kept}: copy what you need from it and run `pgha config edit` again", err=True)
        return EXIT_REFUSED
    lines = diff(before, after)
    if not lines:
        path.unlink()
        echo("no change")
        return 0
    for line in lines:
        echo(line)
    if not confirm(f"Write these changes to the config of cluster {target.cluster!r}?"):
        path.unlink()
        echo("config not changed: cancelled")
        return EXIT_REFUSED
    return _write(target, after, revision, path, echo)


def _write(
    target: ClusterTarget, after: dict[str, Any], revision: int, path: Path, echo: Echo
) -> int:
    """Compare-and-set on the revision the edit started from; the file goes only once written."""
    kept = f"your edits are kept in {path}"
    try:
        written = target.store.put(CONFIG, after, expected_mod_revision=revision)
    except PghaError as exc:
        echo(f"config may not have been written: {exc}; check `pgha config show`; {kept}", err=True)
        return EXIT_ETCD_UNREACHABLE
    if not written:
        echo(
            f"config not changed: someone changed it since revision {revision}; {kept}: run "
            "`pgha config edit` again to edit the current config",
            err=True,
        )
        return EXIT_REFUSED
    path.unlink()
    echo(f"config of cluster {target.cluster!r} written")
    return 0


def _write_temp(text: str) -> Path:
    """A private (0600) temporary YAML file holding `text`."""
    handle, name = tempfile.mkstemp(prefix="pgha-config-", suffix=".yml")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    return Path(name)
