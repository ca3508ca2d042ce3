"""Answers leaving the app: one to the clipboard, a task's whole document to a file in the exports folder.

The results screen, the compare screen and the control room's palette entries share these (imported when asked:
the document's model, pydantic, is not on the first frame's path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import App

from swarm_tui.engine.bus.wire import Result
from swarm_tui.engine.config.load import Config
from swarm_tui.engine.paths import data_dir
from swarm_tui.textsafe import plain
from swarm_tui.tui.results_doc import answer_text, write_private


def export_dir(cfg: Config) -> Path:
    """Where saved results go: the data dir's exports/ folder (the demo's own under its data dir)."""
    return data_dir(cfg.paths.data_dir) / "exports"


def copy_answer(app: App[Any], index: int, r: Result) -> None:
    """The answer as stored, made inert, to the clipboard (OSC 52: the terminal decides whether it lands)."""
    text = answer_text(r)
    app.copy_to_clipboard(text)
    app.notify(f"answer {index} ({len(text)} characters) copied to the clipboard (OSC 52)", timeout=4, markup=False)


def save_document(app: App[Any], task_id: str, document: str, export_dir: Path) -> Path | None:
    """Write the document to ``export_dir/<task id>.md`` and say where; None (and an error toast) on failure."""
    path = export_dir / f"{plain(task_id).replace('/', '_')}.md"
    try:
        export_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        export_dir.chmod(0o700)  # the answers of every task saved: the owner's only, as the files are
        write_private(path, document, ours=True)
    except OSError as exc:
        app.notify(
            f"could not save {plain(str(path))}: {plain(exc.strerror or str(exc))[:200]}",
            severity="error",
            markup=False,
        )
        return None
    app.notify(f"saved to {plain(str(path))}", title="results", timeout=8, markup=False)
    return path
