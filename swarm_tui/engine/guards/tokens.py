"""How many tokens a prompt can take at most: one a UTF-8 byte, plus the chat template's overhead.

A reservation has to bound what a call can be billed, not what it is likely to cost. Byte-level tokenizers
(byte-level BPE, SentencePiece with byte fallback) take at most one token per UTF-8 byte of the text: every byte
is in their vocabulary and merges only make fewer tokens. Characters-per-token figures hold for English and
fail for the rest: measured with a real tokenizer, emoji cost about 8x and CJK extension B about 11x a
3-characters-a-token estimate (docs/reliability.md, "What a call may cost, and when money is held"). The
model's context length, when OpenRouter's model list gives it, bounds the prompt too.
"""

from __future__ import annotations

from collections.abc import Iterable

PROMPT_MARGIN_TOKENS = 32  # the chat template's fixed overhead
MESSAGE_TOKENS = 4  # and its overhead per message (role markers)


def utf8_len(text: str) -> int:
    """The bytes ``text`` takes in the request (a lone surrogate, which JSON lets through, as 3 bytes)."""
    return len(text.encode("utf-8", "surrogatepass"))


def messages_bytes(contents: Iterable[str]) -> int:
    return sum(utf8_len(c) for c in contents)


def prompt_tokens_bound(utf8_bytes: int, messages: int = 1) -> int:
    """The most prompt tokens ``utf8_bytes`` of message text in ``messages`` messages can be billed as (the
    model's context length caps it where the price list gives one: guards/estimate.py)."""
    return max(0, utf8_bytes) + PROMPT_MARGIN_TOKENS + MESSAGE_TOKENS * max(1, messages)


# A job that builds on earlier results (a later step, a follow-up) is sent them bounded to
# swarm.context_max_chars characters plus CONTEXT_HEADINGS_CHARS of their headings (swarm/dispatcher.py
# ``bounded_context`` cuts there), and at most 1,500 characters of intro and the follow-up's reason: what its
# worst case counts before the results exist. One result's heading (role, step, model, state, reason, cut
# note) takes at most RESULT_HEADING_CHARS.
CONTEXT_HEADINGS_CHARS = 1_000
CONTEXT_EXTRA_CHARS = CONTEXT_HEADINGS_CHARS + 1_500
RESULT_HEADING_CHARS = 500


def context_bytes_bound(max_chars: int) -> int:
    """The most UTF-8 bytes the earlier results given to a job can take (4 bytes a character at most)."""
    return 4 * (max(0, max_chars) + CONTEXT_EXTRA_CHARS)


def given_bytes_bound(results: Iterable[str], max_chars: int) -> int:
    """The most UTF-8 bytes a job given these earlier results takes for them, with their headings and intro."""
    known = sum(utf8_len(t) + 4 * RESULT_HEADING_CHARS for t in results) + 4 * CONTEXT_EXTRA_CHARS
    return min(context_bytes_bound(max_chars), known)
