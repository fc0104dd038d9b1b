"""One engine, one process: load it, then decode the prompts the runner asks for, one at a time.

Decode speed counts forward steps after prefill: N new tokens are N-1 single-token
forwards (the first comes from the prefill logits), the same for every engine.

Run by the bench runner as `python -m edgespec.bench.worker SPEC_JSON`, so every engine's
memory is measured alone. Protocol (one JSON object per line on stdout): it prints
{"ready": true} once loaded; then each stdin line with a prompt index gets that prompt's
result; the line "quit" gets {"peak_rss", "version"} and the worker exits. The runner keeps
several workers loaded and takes turns among them prompt by prompt, so an engine and the
plain engine it is compared with run seconds apart, not minutes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from importlib.metadata import version

import numpy as np

from ..sysinfo import peak_rss


def run_ours(spec: dict):
    # here, not at the top: a peers-only Python (numpy + onnxruntime-genai) imports this module for its engine
    from ..api import load

    backend = spec.get("backend", "ort")
    source = {"ort": spec["export"], "static": spec.get("static_export")}.get(backend, spec["gguf"])
    model = load(source, backend=backend, threads=spec["threads"], context=spec["n_ctx"],
                 spec=spec.get("spec_mode", "off"), draft_budget=spec.get("budget", 8))
    model.settle()  # decode speed is the steady state's: the weights in huge pages, as after the first seconds

    def run(prompt: list[int]) -> dict:
        inside = getattr(model.backend, "decode_seconds", None)
        generation = model.generate(prompt, max_tokens=spec["tokens"], stop_on_eos=False)
        list(generation)
        s = generation.stats
        result = {"prefill_s": s.prefill_seconds, "prompt_tokens": s.prompt_tokens, "decode_s": s.decode_seconds,
                  "steps": s.generated_tokens - 1, "token_ids": s.token_ids, "spec": s.spec.as_dict()}
        if inside is not None:  # llama.cpp: seconds inside llama_decode, prefill included
            result["backend_s"] = model.backend.decode_seconds - inside
        return result

    return run


def _peer_result(prompt: list[int], prefill_s: float, decode_started: float, tokens: list[int]) -> dict:
    """A peer's timings for one prompt, in the shape the runner reads (ours adds spec stats)."""
    return {"prefill_s": prefill_s, "prompt_tokens": len(prompt), "decode_s": time.perf_counter() - decode_started,
            "steps": len(tokens) - 1, "token_ids": tokens}


def run_llamacpp(spec: dict):
    from ..runtimes.llamacpp import llama_cpp_module  # here: see run_ours

    Llama = llama_cpp_module().Llama

    llm = Llama(model_path=spec["gguf"], n_ctx=spec["n_ctx"], n_threads=spec["threads"], n_batch=512, verbose=False)
    n_vocab = llm.n_vocab()

    def run(prompt: list[int]) -> dict:
        llm.reset()
        start = time.perf_counter()
        llm.eval(prompt)
        prefill = time.perf_counter() - start
        tokens, start = [], time.perf_counter()
        # The same loop llama-cpp-python's generate() runs: sample greedily, eval one token.
        for _ in range(spec["tokens"]):
            # logits of the last evaluated token (llama-cpp-python keeps no scores without logits_all)
            token = int(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).argmax())
            tokens.append(token)
            if len(tokens) == spec["tokens"]:
                break
            llm.eval([token])
        return _peer_result(prompt, prefill, start, tokens)

    return run


def run_llamacpp_lookup(spec: dict):
    """llama-cpp-python's own prompt-lookup speculation (LlamaPromptLookupDecoding) through Llama.generate.

    It needs logits_all=True (without it 0.3.36 crashes past ~512 tokens); the first token's time counts
    as prefill, the rest as decode."""
    from ..runtimes.llamacpp import llama_cpp_module  # here: see run_ours

    Llama = llama_cpp_module().Llama
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding  # optional (the [llamacpp] extra)

    llm = Llama(model_path=spec["gguf"], n_ctx=spec["n_ctx"], n_threads=spec["threads"], n_batch=512,
                logits_all=True, draft_model=LlamaPromptLookupDecoding(num_pred_tokens=10), verbose=False)

    def run(prompt: list[int]) -> dict:
        tokens, start, prefill = [], time.perf_counter(), 0.0
        for token in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
            tokens.append(int(token))
            if len(tokens) == 1:
                prefill, start = time.perf_counter() - start, time.perf_counter()
            if len(tokens) == spec["tokens"]:
                break
        return _peer_result(prompt, prefill, start, tokens)

    return run


def run_ortgenai(spec: dict):
    """onnxruntime-genai on a model its own builder made from the same weights (the [peers] setup);
    engine "onnxruntime-genai+ngram": with its own n-gram speculation (ngram_size 3, up to `budget` drafts)."""
    import onnxruntime_genai as og  # optional: the [peers] extra, maybe in another Python

    config_file = f"{spec['genai_model']}/genai_config.json"
    with open(config_file) as f:
        config = json.load(f)
    config["model"]["decoder"].setdefault("session_options", {})["intra_op_num_threads"] = spec["threads"]
    with open(config_file, "w") as f:
        json.dump(config, f, indent=1)
    model = og.Model(spec["genai_model"])

    def run(prompt: list[int]) -> dict:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(prompt) + spec["tokens"], do_sample=False)
        if spec["engine"].endswith("+ngram"):
            params.set_speculative_options(ngram_size=3, max_draft_tokens=spec["budget"])
        generator = og.Generator(model, params)
        start = time.perf_counter()
        generator.append_tokens(prompt)  # prefill
        generator.generate_next_token()  # picks the first new token from the prefill logits
        prefill, start = time.perf_counter() - start, time.perf_counter()
        while not generator.is_done():  # a plain step adds one token, a speculative round may add several
            generator.generate_next_token()
        tokens = [int(t) for t in generator.get_sequence(0)[len(prompt):]]
        return _peer_result(prompt, prefill, start, tokens)

    return run


ENGINES = {"edgespec": run_ours, "llama.cpp": run_llamacpp, "llama.cpp+lookup": run_llamacpp_lookup,
           "onnxruntime-genai": run_ortgenai, "onnxruntime-genai+ngram": run_ortgenai}


def main() -> None:
    # replies go on a private copy of stdout; whatever the engines print (C libraries too) goes to stderr
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    def reply(obj: dict) -> None:
        replies.write(json.dumps(obj) + "\n")
        replies.flush()

    spec = json.loads(sys.argv[1])
    run = ENGINES["edgespec" if spec["engine"].startswith("edgespec") else spec["engine"]](spec)
    reply({"ready": True})
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        reply(run(spec["prompts"][int(line)]))
    reply({"peak_rss": peak_rss(), "version": _version(spec["engine"])})


def _version(engine: str) -> str:
    package = {"edgespec-ort": "onnxruntime", "edgespec-static": "onnxruntime", "edgespec-llamacpp": "llama-cpp-python",
               "llama.cpp": "llama-cpp-python",
               "onnxruntime-genai": "onnxruntime-genai"}[engine.split("+")[0]]
    return f"{package} {version(package)}"


if __name__ == "__main__":
    main()
