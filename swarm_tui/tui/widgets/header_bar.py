"""The header: one line saying the bus, the conductor, the approval mode, the scale and what needs you.

What stops all work is said here with what to do, for as long as it holds: no OpenRouter key, a key OpenRouter
rejects, its limit used up, no credit, paused, scale 0. No key with a local role configured stops nothing: the
swarm runs local only, and the line says so."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from rich.text import Text
from textual.reactive import var
from textual.widgets import Static

from swarm_tui.engine.info import ConductorInfo, EngineInfo, Need, SpendInfo, usable
from swarm_tui.engine.projection.state import SwarmState
from swarm_tui.engine.states import NeedKind
from swarm_tui.textsafe import plain

NEED_WORDS: Final[dict[NeedKind, str]] = {
    "approval": "approval",
    "failed": "failed job",
    "spend": "spend",
    "ceiling": "ceiling",
    "credit": "credit",
    "key": "key rejected",
    "bus": "bus lost",
}
_NEED_WORD_BY_NAME: Final[dict[str, str]] = {kind: word for kind, word in NEED_WORDS.items()}
NO_KEY: Final = "no OpenRouter key: set OPENROUTER_API_KEY or start with --demo"
NO_KEY_SHORT: Final = "no key: set OPENROUTER_API_KEY or --demo"
LOCAL_ONLY: Final = "local only (no OpenRouter key)"  # local roles run without a key: nothing stops them


@dataclass(frozen=True)
class HeaderView:
    """What the header line is built from."""

    bus_state: str
    bus_kind: str
    link_kind: str
    info: EngineInfo
    state: SwarmState
    demo: bool
    approval: str
    engine_error: str = ""
    compact: bool = False
    needs: tuple[Need, ...] = ()
    needs_key: str = "!"
    configured_scale: int = 0  # swarm.scale, shown until the engine says its scale (figures.scale_figure)
    has_key: bool = True  # an OpenRouter key is configured (what the header says before the engine's first check)
    local_roles: bool = False  # an ollama_chat/ role is configured: with no key the swarm runs local only
    pause_key: str = "p"
    replay: str = ""  # what is replayed ("the bus's log", "file x.jsonl"): the REPLAY badge and no live bus or key


class HeaderBar(Static):
    """One line: bus, conductor, approval mode, scale, DEMO."""

    # What the line shows. It is set with every state refresh and every second, and its state is the same
    # object changed in place, so every assignment builds the line (always_update) ...
    view: var[HeaderView | None] = var(None, init=False, always_update=True)
    # ... and only a changed line is repainted, never re-laid out (one line of a fixed height).
    line: var[Text] = var(Text, init=False)

    def watch_view(self, view: HeaderView | None) -> None:
        if view is None:
            return
        room = self.content_size.width
        # too long: first without the bus's kind, then the short words; what stops work keeps its words longest
        # (the conductor's field goes first: nothing it decides starts then)
        tries: tuple[dict[str, bool], ...] = (
            {},
            {"bus_kind_shown": False},
            {"compact": True, "blocking_short": False},
            {"compact": True, "blocking_short": False, "conductor_shown": False},
            # what stops work, in full, before the bus's kind and the conductor: they give way first
            {"compact": True, "blocking_short": False, "conductor_shown": False, "bus_kind_shown": False},
            {"compact": True},
            {"compact": True, "bus_kind_shown": False, "conductor_shown": False},
            # the key's fewest words: the other states that stop work (scale 0, the bus lost) stay in sight
            {"compact": True, "bus_kind_shown": False, "conductor_shown": False, "key_tiny": True},
        )
        if not blocking(view):  # nothing stops work: the short words at once, as ever
            tries = tuple(kw for kw in tries if "blocking_short" not in kw)
        if not key_blocks(view) and not key_always(view):  # the fewest words are the key's (or "local only")
            tries = tuple(kw for kw in tries if "key_tiny" not in kw)
        for kw in tries if not view.compact else tuple(kw for kw in tries if kw.get("compact")):
            line = self.build(view, **kw)
            if not room or line.cell_len <= room:
                break
        self.line = line

    def watch_line(self, line: Text) -> None:
        self.update(line, layout=False)

    @staticmethod
    def build(
        view: HeaderView,
        *,
        compact: bool = False,
        bus_kind_shown: bool = True,
        blocking_short: bool | None = None,
        conductor_shown: bool = True,
        key_tiny: bool = False,
    ) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis")
        info, state, needs, bus_state = view.info, view.state, view.needs, view.bus_state
        eng = usable(info.get("engine"))  # None until an engine answers (or a forged one is no dict)
        cond = usable(info.get("conductor"))
        demo = view.demo or bool(eng and eng.get("demo"))
        key = _key(view)
        short = compact if blocking_short is None else blocking_short  # what stops work or needs you: cut last
        if view.replay:  # the past, read-only: said before anything else on the line
            t.append(" REPLAY ", style="bold reverse cyan")
            t.append(" ")
        if demo:
            t.append(" DEMO ", style="bold reverse magenta")
            t.append(" ")
        elif not compact and not view.replay and not needs and not (key and key.blocks):
            t.append(" swarm-tui ", style="bold reverse")
            t.append(" ")
        if key and key.blocks:  # before anything else: no work starts until it changes
            said = key.tiny if key_tiny else key.short if short else key.words
            t.append(f" {said} ", style="bold reverse red")
            t.append(" ")
        if needs:  # the badge: stays until someone sees it (the ! key, or `swarm-tui seen`)
            kinds = ", ".join(_NEED_WORD_BY_NAME.get(n["kind"], n["kind"]) for n in needs)
            badge = f" ⚑ {len(needs)} " if short else f" ⚑ needs you: {kinds} · {view.needs_key} "
            t.append(badge, style="bold reverse yellow")
            t.append(" ")
        ok = bus_state == "connected"
        if not view.replay:
            t.append("● " if ok else "○ ", style="green" if ok else "bold red")
        if view.replay:
            t.append(plain(view.replay)[: 40 if bus_kind_shown else 20])
        elif bus_kind_shown:
            t.append(f"bus {bus_state} " if not compact or not ok else "bus ", style="" if ok else "bold red")
            t.append(f"({view.bus_kind or '-'})", style="dim")
        elif key_tiny and ok:
            t.append("bus")
        else:
            t.append(f"bus {bus_state}", style="" if ok else "bold red")
        if view.engine_error or conductor_shown or state.paused:
            t.append(" │ ", style="dim")
        if view.engine_error:
            t.append(f"engine failed: {plain(view.engine_error)[:60]}", style="bold red")
        elif not conductor_shown:
            if state.paused:
                t.append(f"paused ({view.pause_key} to resume)", style="bold yellow")
        else:
            cstate = plain(str(cond.get("state", "-"))[:80])[:20] if cond else "-"
            t.append(f"{'' if compact else 'conductor '}{conductor_source(cond)}")
            if cstate not in ("idle", "paused"):  # idle is the usual: only the other states are news
                t.append(f" · {cstate}")
            if state.paused:  # from the event log: the same for a local and an attached app
                t.append(" · ")
                t.append(f"paused ({view.pause_key} to resume)", style="bold yellow")
            else:
                nxt = cond.get("next_beat_s") if cond else None
                if nxt is not None:  # in steps of 5 s: the header is repainted every 5 s at rest, not every second
                    t.append(f" · {'' if compact else 'next beat '}{countdown(nxt)}")
        t.append(" │ ", style="dim")
        # the conductor's policy ("auto (<= $x)" says the limit); this app's configuration while none answers
        mode = plain(str((cond.get("approval") if cond else None) or view.approval)[:80])[:12]
        pending = len(state.pending_decisions())
        t.append((mode if compact else f"approval {mode}") + (" " if pending else ""))
        if pending:
            t.append(f"({pending} waiting)" if not compact else f"{pending}!", style="bold yellow")
        t.append(" │ ", style="dim")
        scale = state.scale_figure(view.configured_scale).value
        if scale == 0:
            t.append(
                "scale 0: no worker will start (+ to raise)" if not short else "scale 0: none start",
                style="bold yellow",
            )
        else:
            t.append(f"scale {scale}")
        if key and not key.blocks and (key.always or (not compact and bus_kind_shown)):  # "key ok": room allowing
            t.append(" │ ", style="dim")
            t.append(key.short if compact else key.words, style=key.style)
        lane = usable(info.get("lane"))
        if lane and (lane.get("holder") or lane.get("waiting")):
            waiting = lane.get("waiting", [])
            t.append(" │ ", style="dim")
            t.append(f"{'lane' if compact else 'local lane'}: {plain(str(lane.get('holder') or 'free')[:100])[:24]}")
            if waiting:
                t.append(f" (+{len(waiting)} waiting)", style="yellow")
        if view.link_kind == "remote engine":
            t.append(" │ ", style="dim")
            t.append(
                f"attached to {plain(str(eng.get('host', '?'))[:80])[:20]}" if eng else "attached: no engine answers",
                style="" if eng else "bold red",
            )
        return t


def _key(view: HeaderView) -> KeyState | None:
    """What the header says of the key (None in demo mode or a replay: no key is used)."""
    eng = usable(view.info.get("engine"))
    if view.demo or view.replay or (eng and eng.get("demo")):
        return None
    return key_state(usable(view.info.get("spend")), view.has_key, view.local_roles)


def key_blocks(view: HeaderView) -> bool:
    """Whether the header says the key stops cloud work (none in demo mode)."""
    key = _key(view)
    return bool(key and key.blocks)


def key_always(view: HeaderView) -> bool:
    """Whether the header says the key's state in every form of the line ("local only": the fewest words too)."""
    key = _key(view)
    return bool(key and key.always)


def blocking(view: HeaderView) -> bool:
    """Whether the header says something that stops all work (its words are kept longest)."""
    return key_blocks(view) or view.state.scale_figure(view.configured_scale).value == 0


@dataclass(frozen=True)
class KeyState:
    """The OpenRouter key as the header says it."""

    words: str
    short: str
    blocks: bool  # no cloud work starts while it holds
    style: str = "dim"
    tiny_words: str = ""  # the fewest words, when even the short ones leave no room (the short ones if unset)
    always: bool = False  # said in every form of the line, not only room allowing (local only: news, not a stop)

    @property
    def tiny(self) -> str:
        return self.tiny_words or self.short


def key_state(spend: SpendInfo | None, has_key: bool, local_roles: bool = False) -> KeyState | None:
    """The key's state from the spend guard's last look at ``GET /key`` (and a 402), or from the configuration
    while no spend guard reports (the engine is starting: the first frame already says a missing key). With no
    key and a local role configured, the local roles run: "local only", which stops nothing."""
    local_only = KeyState(LOCAL_ONLY, "local only", False, "yellow", always=True)
    if spend is None or "key_status" not in spend:
        if has_key:
            return None
        return local_only if local_roles else KeyState(NO_KEY, NO_KEY_SHORT, True, tiny_words="no key")
    # cut before cleaning: a forged info may hold a megabyte here (the engine's own are at most 200 characters)
    status = plain(str(spend.get("key_status") or "")[:60])[:60]
    blocked = plain(str(spend.get("blocked_reason") or "")[:200])
    if status == "no key":
        return local_only if local_roles else KeyState(NO_KEY, NO_KEY_SHORT, True, tiny_words="no key")
    short_rejected = "key rejected: check OPENROUTER_API_KEY"
    if status.startswith("rejected"):
        return KeyState(f"key {status}: check OPENROUTER_API_KEY", short_rejected, True, tiny_words="key rejected")
    if spend.get("key_rejected") is True or blocked.startswith("key rejected"):  # a later check failed: still so
        return KeyState(short_rejected, short_rejected, True, tiny_words="key rejected")
    if blocked.startswith("key limit"):
        return KeyState("key limit used up: raise it on openrouter.ai", "key limit used up", True)
    if spend.get("out_of_credit") or blocked:
        return KeyState("out of credit: add credit on openrouter.ai", "no credit", True)
    if status == "ok":
        return KeyState("key ok", "key ok", False)
    return KeyState(f"key {status}", f"key {status}"[:24], False, "yellow")  # not checked yet, unreachable


COUNTDOWN_STEP_S = 5


def countdown(seconds: float) -> str:
    """``"in 25s"``-style countdown rounded up to a step of 5 s ("≤25s"): a repaint per step, not per second."""
    left = max(0.0, float(seconds))
    if left <= 0:
        return "now"
    return f"≤{int(-(-left // COUNTDOWN_STEP_S)) * COUNTDOWN_STEP_S}s"


def conductor_source(cond: ConductorInfo | None) -> str:
    """What decides, as far as is known: the rules when Ollama did not answer, the model only once it did."""
    if not cond:
        return "-"
    source = plain(str(cond.get("source", "-"))[:100])[:28]
    if not cond.get("ollama_model"):  # the conductor does not ask Ollama
        return source
    reachable = cond.get("ollama_reachable")
    if reachable is False:
        return "rules (Ollama unreachable)"
    if reachable is None:
        return f"{source} (not checked yet)"
    return source
