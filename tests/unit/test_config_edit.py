"""`pgha config edit` (pgha/cli_config_edit.py): the edited YAML checked as `config set`
checks it, and the whole flow on the in-memory store with a scripted "editor"."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pgha.adapters.memory_store import MemoryEtcd, MemoryStore
from pgha.adapters.store import CONFIG, Record
from pgha.cli_config_edit import (
    EditRefused,
    choose_editor,
    edit_config,
    edited_config,
    render_document,
)
from pgha.cli_target import ClusterTarget

STORED: dict[str, Any] = {
    "ttl": 10,
    "loop_wait": 1,
    "retry_timeout": 3,
    "safety_margin": 2,
    "maximum_lag_on_failover": 1048576,
}


def edited(**changes: Any) -> str:
    """The rendered document with some lines replaced (value None: the line removed)."""
    lines = []
    for line in render_document(STORED, "main", 7).splitlines():
        key = line.partition(":")[0]
        if key in changes:
            value = changes.pop(key)
            if value is not None:
                lines.append(f"{key}: {value}")
            continue
        lines.append(line)
    lines.extend(f"{key}: {value}" for key, value in changes.items())
    return "\n".join(lines) + "\n"


def test_the_rendered_document_reads_back_unchanged() -> None:
    text = render_document(STORED, "main", 7)
    assert "# The dynamic configuration of cluster 'main' (etcd revision 7)." in text
    assert "#   paused: maintenance mode" in text
    assert edited_config(STORED, text) == STORED


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"maximum_lag_on_failover": "2097152"}, {"maximum_lag_on_failover": 2097152}),
        ({"ttl": "12", "loop_wait": "2"}, {"ttl": 12.0, "loop_wait": 2.0}),
        ({"paused": "true"}, {"paused": True}),
        ({"paused": "'off'"}, {"paused": False}),
        (
            {"remove_data_directory_on_rewind_failure": "yes"},
            {"remove_data_directory_on_rewind_failure": True},
        ),
    ],
)
def test_changed_and_added_keys_are_converted_like_config_set(
    changes: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert edited_config(STORED, edited(**changes)) == {**STORED, **expected}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (edited(ttl="abc"), "ttl='abc': not a valid value"),
        (edited(ttl=""), "ttl='': not a valid value"),
        (edited(ttl="[1, 2]"), "ttl='[1, 2]'"),
        (edited(ttl="true"), "ttl='true'"),
        (edited(maximum_lag_on_failover="-1"), "maximum_lag_on_failover='-1': must be"),
        (edited(paused="maybe"), "paused='maybe': must be true or false"),
        (edited(tll="20"), "unknown key 'tll'; known keys: loop_wait,"),
        (edited(loop_wait="9"), "timers leave no room to fence"),
        (edited(ttl=None), "ttl was removed"),
        ("ttl: [10\n", "not valid YAML at line 2"),
        ("- ttl\n- 10\n", "expected KEY: VALUE lines (a YAML mapping), found a list"),
    ],
)
def test_bad_edits_are_refused_naming_the_key(text: str, problem: str) -> None:
    with pytest.raises(EditRefused) as refused:
        edited_config(STORED, text)
    assert any(problem in line for line in refused.value.problems), refused.value.problems


def test_every_bad_key_is_named_at_once() -> None:
    with pytest.raises(EditRefused) as refused:
        edited_config(STORED, edited(ttl="x", loop_wait="y", nope="1"))
    assert len(refused.value.problems) == 3


def test_a_key_pgha_does_not_know_may_be_dropped_or_left_alone() -> None:
    stored = {**STORED, "legacy": "x"}
    text = render_document(stored, "main", 7)
    assert edited_config(stored, text) == stored
    assert edited_config(stored, text.replace("legacy: x\n", "")) == STORED


@pytest.mark.parametrize(
    ("environ", "editor"),
    [
        ({"VISUAL": "code --wait", "EDITOR": "nano"}, "code --wait"),
        ({"VISUAL": " ", "EDITOR": "nano"}, "nano"),
    ],
)
def test_the_editor_comes_from_visual_then_editor(environ: dict[str, str], editor: str) -> None:
    assert choose_editor(environ) == editor


def test_without_visual_or_editor_the_fallback_is_editor_or_vi() -> None:
    assert choose_editor({}) in ("editor", "vi")


# --- the flow on the in-memory store --------------------------------------------------------


@pytest.fixture(autouse=True)
def private_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command's temporary files go to the test's directory, kept or not."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


class Session:
    """A target on an in-memory etcd holding STORED, and what the command printed."""

    def __init__(self) -> None:
        self.store = MemoryStore(MemoryEtcd(clock=lambda: 0.0), "/pgha/main")
        assert self.store.put(CONFIG, STORED, expected_mod_revision=0)
        self.target = ClusterTarget("main", "pgha", ["memory"], self.store)  # type: ignore[arg-type]
        self.out: list[str] = []
        self.err: list[str] = []
        self.paths: list[Path] = []

    def echo(self, text: str = "", err: bool = False) -> None:
        (self.err if err else self.out).append(text)

    def run(self, rewrite: Callable[[str], str], confirm: bool = True) -> int:
        def editor(path: Path) -> None:
            self.paths.append(path)
            path.write_text(rewrite(path.read_text()))

        return edit_config(
            self.target, confirm=lambda question: confirm, echo=self.echo, editor=editor
        )

    def stored(self) -> Any:
        value = self.store.read_cluster().get(CONFIG)
        assert isinstance(value, Record)
        return value.data


def test_a_valid_edit_is_shown_and_written() -> None:
    session = Session()
    code = session.run(
        lambda text: text.replace(
            "maximum_lag_on_failover: 1048576", "maximum_lag_on_failover: 2097152"
        )
    )
    assert code == 0, session.err
    assert "maximum_lag_on_failover: 1048576 -> 2097152" in session.out
    assert session.stored()["maximum_lag_on_failover"] == 2097152
    assert not session.paths[0].exists()


def test_an_unchanged_file_is_no_change() -> None:
    session = Session()
    assert session.run(lambda text: text + "# only a comment\n") == 0
    assert session.out == ["no change"]
    assert not session.paths[0].exists()


def test_an_invalid_edit_writes_nothing_and_keeps_the_file() -> None:
    session = Session()
    assert session.run(lambda text: text.replace("ttl: 10", "ttl: soon")) == 1
    assert session.stored() == STORED
    path = session.paths[0]
    assert path.exists()
    assert "ttl: soon" in path.read_text()
    assert any(str(path) in line for line in session.err)


def test_a_concurrent_change_wins_and_the_edit_is_kept() -> None:
    session = Session()

    def meanwhile(text: str) -> str:
        assert session.store.put(CONFIG, {**STORED, "paused": True})
        return text.replace("ttl: 10", "ttl: 12")

    assert session.run(meanwhile) == 1
    assert session.stored() == {**STORED, "paused": True}
    assert any("someone changed it" in line for line in session.err)
    assert session.paths[0].exists()


def test_a_refused_confirmation_writes_nothing() -> None:
    session = Session()
    assert session.run(lambda text: text.replace("ttl: 10", "ttl: 12"), confirm=False) == 1
    assert session.stored() == STORED
    assert "config not changed: cancelled" in session.out
