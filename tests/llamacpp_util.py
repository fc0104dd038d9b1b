"""llama.cpp (llama-cpp-python) as the reference implementation in tests."""

from __future__ import annotations

import numpy as np


def llama(path, n_ctx: int = 1024, **kwargs):
    from llama_cpp import Llama

    return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=2, verbose=False, **kwargs)


def teacher_forced_logits(llm, tokens: list[int]) -> np.ndarray:
    """Logits [len(tokens), vocab] of llama.cpp evaluating `tokens` in one batch."""
    llm.reset()
    llm.eval(tokens)
    return np.array(llm.scores[: len(tokens)], dtype=np.float32)


def greedy(llm, tokens: list[int], n: int, stop_ids=()) -> list[int]:
    out = []
    for token in llm.generate(tokens, temp=0.0, top_k=1, reset=True):
        if token in stop_ids or len(out) == n:
            break
        out.append(token)
    return out


def write_f32_copy(src, dst) -> None:
    """The same GGUF with every tensor dequantized to F32 (tensors as stored, metadata copied).

    llama.cpp computes quantized matmuls with int8-rounded activations; on an F32 file it
    does plain float dot products, which makes it a sharper oracle for our reference.
    """
    import gguf

    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(str(dst), arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type"):
            continue
        sub_type = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), field.types[0], sub_type=sub_type)
    for t in reader.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        writer.add_tensor(t.name, values.reshape([int(d) for d in reversed(t.shape)]))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
