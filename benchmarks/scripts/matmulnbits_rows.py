"""What one MatMulNBits node costs for M rows of activations, by bits, accuracy level and block size.

    python benchmarks/scripts/matmulnbits_rows.py [THREADS]

Why: a verify pass of T rows costs t(T), and the shape of that curve decides how far speculation pays
(speculative/controller.py). This times the kernel alone on qwen2.5-coder-0.5b's shapes (ffn up/gate, ffn down,
a quarter of the lm_head) with random weights: best of 5 loops, each after 10 warm-up calls, so the small shapes
run from cache and measure compute, the lm_head quarter (17 MB at 4 bits) runs from memory.
"""
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

SHAPES = ((896, 4864), (4864, 896), (896, 151936 // 4))  # (K, N)
# (bits, accuracy_level, block_size, zero points): level 4 = int8 activations (the export's), 1 = fp32, 2 = fp16;
# zero points packed in the weight's bits (True), none (False) or "float" (fp32, one per block: what a Q4_1 /
# Q4_K block's offset `m` would need exactly, as -m / scale)
CONFIGS = ((4, 4, 32, True), (4, 4, 32, False), (8, 4, 32, True), (4, 4, 128, True), (4, 1, 32, True),
           (4, 2, 32, True), (4, 4, 32, "float"))
ROWS = (1, 2, 4, 8)


def session(K: int, N: int, bits: int, level: int, block: int, zero_points: bool, threads: int):
    rng = np.random.default_rng(0)
    blocks = K // block
    weights = [numpy_helper.from_array(rng.integers(0, 256, (N, blocks, block * bits // 8), dtype=np.uint8), "B"),
               numpy_helper.from_array((rng.random(N * blocks, dtype=np.float32) + 0.5) * 0.01, "S")]
    if zero_points == "float":
        weights.append(numpy_helper.from_array(rng.random(N * blocks, dtype=np.float32) * 15, "Z"))
    elif zero_points:
        weights.append(numpy_helper.from_array(
            rng.integers(0, 256, (N, (blocks * bits + 7) // 8), dtype=np.uint8), "Z"))
    node = helper.make_node("MatMulNBits", ["A", "B", "S", "Z"][:len(weights) + 1], ["Y"], domain="com.microsoft",
                            K=K, N=N, bits=bits, block_size=block, accuracy_level=level)
    graph = helper.make_graph([node], "one_matmulnbits", [helper.make_tensor_value_info("A", TensorProto.FLOAT,
                              [None, K])], [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, N])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def milliseconds(sess, rows: int, K: int, calls: int) -> float:
    feed = {"A": np.random.default_rng(1).standard_normal((rows, K), dtype=np.float32)}
    for _ in range(10):
        sess.run(None, feed)
    loops = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            sess.run(None, feed)
        loops.append((time.perf_counter() - start) / calls)
    return 1e3 * min(loops)


def main() -> None:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    print(f"onnxruntime {ort.__version__}, {threads} threads; ms per call (x the 1-row time)")
    for K, N in SHAPES:
        for bits, level, block, zero_points in CONFIGS:
            sess = session(K, N, bits, level, block, zero_points, threads)
            times = {m: milliseconds(sess, m, K, 60 if N > 20000 else 200) for m in ROWS}
            cells = "  ".join(f"M={m} {t:.3f} ({t / times[1]:.2f})" for m, t in times.items())
            zp = {True: "yes", False: "no"}.get(zero_points, zero_points)
            print(f"K={K} N={N} bits={bits} level={level} block={block} zp={zp}: {cells}", flush=True)


if __name__ == "__main__":
    main()
