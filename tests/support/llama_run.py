"""How the llama.cpp stand-in (tests/support/llama_ollama.py) runs a call: the heartbeat's greedy, grammar-bound
generation as llama.cpp samples it, and llama.cpp's own timing counters for the response."""

from __future__ import annotations

from typing import Any


def greedy_completion(llm: Any, tokens: list[int], grammar: Any, max_tokens: int) -> tuple[str, int, str]:
    """Temperature 0 under a grammar, sampled as llama.cpp's common sampler does (``common/sampling.h``, the
    sampler of llama-server, whose runner Ollama used for llama.cpp models): the best token is checked against
    the grammar alone, and only when the grammar rejects it is the grammar applied to the whole vocabulary and
    the token chosen again (the slow path). llama-cpp-python's ``create_completion`` applies the grammar to the
    whole vocabulary (262k tokens for Gemma 3) before every token, about 30 ms a token more on 2 cores than
    llama.cpp. (text, tokens generated, "stop" or "length")."""
    import ctypes

    import llama_cpp
    import numpy as np
    from llama_cpp._internals import LlamaTokenDataArray

    n_past = 0  # the prefix evaluated for the previous prompt is kept, as llama.cpp's server keeps it
    for a, b in zip(llm.input_ids[: llm.n_tokens], tokens[:-1], strict=False):
        if int(a) != b:
            break
        n_past += 1
    llm.n_tokens = n_past
    llm.eval(tokens[n_past:])
    vocab = llm._model.vocab
    n_vocab = llm.n_vocab()
    smpl = llama_cpp.llama_sampler_init_grammar(vocab, grammar._grammar.encode(), grammar._root.encode())
    one: Any = (llama_cpp.llama_token_data * 1)()  # ctypes fields: mypy reads them as the ctypes types
    one_arr = llama_cpp.llama_token_data_array(data=one, size=1, selected=-1, sorted=False)
    full = LlamaTokenDataArray(n_vocab=n_vocab)
    out: list[int] = []
    finish = "length"
    try:
        for _ in range(max_tokens):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(n_vocab,))
            tok = int(np.argmax(logits))
            one[0].id, one[0].logit, one[0].p = tok, float(logits[tok]), 0.0
            one_arr.size, one_arr.selected = 1, -1
            llama_cpp.llama_sampler_apply(smpl, ctypes.byref(one_arr))
            if not np.isfinite(one[0].logit):  # the grammar rejects it: the slow path
                full.copy_logits(logits)
                llama_cpp.llama_sampler_apply(smpl, ctypes.byref(full.candidates))
                tok = int(full.candidates_data.id[int(np.argmax(full.candidates_data.logit))])
            llama_cpp.llama_sampler_accept(smpl, tok)
            if llama_cpp.llama_vocab_is_eog(vocab, tok):
                finish = "stop"
                break
            out.append(tok)
            llm.eval([tok])
    finally:
        llama_cpp.llama_sampler_free(smpl)
    return llm.detokenize(out).decode("utf-8", errors="replace"), len(out), finish


def perf_reset(llm: Any) -> None:
    import llama_cpp

    llama_cpp.llama_perf_context_reset(llm._ctx.ctx)


def perf(llm: Any) -> dict[str, int]:
    """Where the call's time went, from llama.cpp's own counters, as Ollama's response splits it (API doc,
    "Generate a chat completion": ``prompt_eval_duration`` and ``eval_duration`` in nanoseconds); and
    ``prompt_evaluated``, a field of the stand-in's own (not Ollama's): the prompt's tokens llama.cpp evaluated,
    the rest having come from the prefix the previous prompt shared (a cache Ollama's runner keeps too)."""
    import llama_cpp

    d = llama_cpp.llama_perf_context(llm._ctx.ctx)
    return {
        "prompt_eval_duration": int(d.t_p_eval_ms * 1e6),
        "eval_duration": int(d.t_eval_ms * 1e6),
        "prompt_evaluated": int(d.n_p_eval),
    }
