"""Toasts that are always plain text.

Textual parses a toast's message as content markup unless ``markup=False`` is passed, and ``Widget.notify`` and
``Screen.notify`` pass ``markup=True`` by default. In markup, ``[@click=app.scale(40)]…[/]`` runs that action when
the toast is clicked. This app's toasts quote a model, a provider or the bus (a failure's reason, an error, a
model or role name), so every one of them is shown as the text it is, whoever asked for it.
"""

from __future__ import annotations

from textual.app import App
from textual.notifications import SeverityLevel


class PlainToastApp(App[int]):
    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)
