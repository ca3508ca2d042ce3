"""Which model names are local, and how a model name reads without its provider prefix.

Model names carry litellm's provider prefix: ``openrouter/<vendor>/<model>`` (the cloud swarm) or
``ollama_chat/<model>`` (this machine's Ollama, the only local prefix a role may name: config checks it).
litellm also knows ``ollama/<model>``; the price book and the RAM guard count it as local too, so such a name
(which can only come from an event somebody else published) is never billed. The pool, though, calls only
``ollama_chat/`` models: code that routes a call, takes the local lane or picks the local/cloud lane asks
``is_local_chat``, so an ``ollama/`` job is still refused as an unsupported model, as it always was. ``ollama_url``
reads OLLAMA_HOST the way Ollama does (the RAM guard, the advisor and ``doctor`` share it).
"""

from __future__ import annotations

OPENROUTER_PREFIX = "openrouter/"
LOCAL_CHAT_PREFIX = "ollama_chat/"
LOCAL_PREFIXES = (LOCAL_CHAT_PREFIX, "ollama/")


def is_local(model: str) -> bool:
    """Runs on this machine's Ollama (``ollama_chat/`` or ``ollama/``): costs nothing, needs RAM headroom."""
    return model.startswith(LOCAL_PREFIXES)


def is_local_chat(model: str) -> bool:
    """A local model the swarm calls (``ollama_chat/``, through litellm, one at a time on the local lane)."""
    return model.startswith(LOCAL_CHAT_PREFIX)


def ollama_name(model: str) -> str:
    """The name Ollama knows a local model by (``ollama_chat/gemma2:2b`` -> ``gemma2:2b``); others unchanged."""
    return model.split("/", 1)[1] if is_local(model) else model


def short_name(model: str) -> str:
    """A model without its ``openrouter/`` or ``ollama_chat/`` prefix, for the screen."""
    for prefix in (OPENROUTER_PREFIX, LOCAL_CHAT_PREFIX):
        if model.startswith(prefix):
            return model[len(prefix) :]
    return model


def ollama_url(host: str) -> str:
    """OLLAMA_HOST as Ollama reads it: host, host:port or a URL; default port 11434."""
    h = host.strip().rstrip("/")
    if "://" not in h:
        h = "http://" + h
    scheme, rest = h.split("://", 1)
    hostport = rest.split("/", 1)[0]
    if ":" not in hostport.rsplit("]", 1)[-1]:
        hostport += ":11434"
    if hostport.startswith("0.0.0.0"):
        hostport = "127.0.0.1" + hostport[len("0.0.0.0") :]
    return f"{scheme}://{hostport}"
