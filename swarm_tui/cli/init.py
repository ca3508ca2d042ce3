"""`swarm-tui init --local`: write a fully local configuration, the heart and its ants on this machine.

No OpenRouter key is needed: the heart (``gemma2:2b`` through Ollama) plans, and every role is a small Ollama
model (the "ants", ``qwen2.5:0.5b``), taking turns with the heart on the local lane. The RAM headroom is kept
(no local model starts below it) and an ant is unloaded as soon as it answers. It refuses to overwrite a file
without ``--force`` and prints where it wrote.
"""

from __future__ import annotations

import os
from pathlib import Path

from swarm_tui.engine.errors import SwarmError, UsageError

HEART = "gemma2:2b"
ANT = "qwen2.5:0.5b"

LOCAL_CONFIG = f"""\
# swarm-tui, fully local (written by `swarm-tui init --local`): no OpenRouter key is needed.
# The heart ({HEART}) plans; every role is a small local model (the ants), and they take turns with the heart
# on this machine's local lane: one local inference at a time, an ant unloaded as soon as it answers.
# First pull both models:
#   ollama pull {HEART}
#   ollama pull {ANT}

[ollama]
model = "{HEART}"     # the heart
keep_alive = "30m"        # the heart stays loaded between beats while the RAM headroom allows

[ram]
headroom_mb = 1536        # RAM kept available: no local model starts below it (a 6 GB machine keeps 1.5 GB)

[swarm]
scale = 2                 # workers at once: local ones queue on the lane anyway

[approval]
mode = "manual"           # "auto" approves every plan under approval.auto_max_usd: local work costs $0

[roles.research]
model = "ollama_chat/{ANT}"
max_tokens = 400

[roles.analysis]
model = "ollama_chat/{ANT}"
max_tokens = 500

[roles.code]
model = "ollama_chat/{ANT}"
max_tokens = 500
"""


def init_config(path: str | None, *, local: bool, force: bool) -> int:
    from swarm_tui.engine.config.load import load_config
    from swarm_tui.engine.paths import config_path

    if not local:
        raise UsageError("init writes a fully local configuration: run `swarm-tui init --local`")
    target = Path(path).expanduser() if path else config_path()
    if (target.exists() or target.is_symlink()) and not force:  # a dangling symlink is the user's too
        raise SwarmError(f"{target} exists: it is kept (pass --force to overwrite it)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(LOCAL_CONFIG, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        raise SwarmError(f"cannot write {target}: {exc.strerror or exc}") from None
    load_config(target, {})  # what was written loads (a slip here would be a bug, said as one line)
    print(f"wrote a fully local configuration to {target}")
    print(f"next: ollama pull {HEART} && ollama pull {ANT}, then swarm-tui doctor and swarm-tui (no key needed)")
    return 0
