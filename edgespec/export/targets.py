"""Export presets per deployment target, as data: ExportOptions fields a target changes.

`web` is for the phone/browser demo (android_demo/). onnxruntime-web's WebGPU backend cannot read an
fp16 embedding table on GPUs without `shader-f16` (headless Chromium's SwiftShader, many phones), so the
table is stored "quantized": the GGUF's own levels as int8 with fp32 block scales, dequantized per row in
the graph with standard ops. That is the GGUF's values exactly (the fp16 table rounds them) at a quarter
of an fp32 table's download; "fp16-widened" (fp16 values stored as fp32, the default export's numbers
exactly) was the preset before and is still a choice. onnxruntime-web's WASM (and WebGPU) kernels compute
MatMulNBits with fp32 activations whatever the accuracy level says, so the web export declares level 1
(fp32 activations): onnxruntime on a CPU then computes what the browser computes (measured: smollm2's
first golden row differs by 0.42 between level 4 on x86 and WASM, and by < 1e-4 between level 1 and
WASM), and its own golden traces (tests/golden/smollm2-135m-web.json) hold for the page.
"""

TARGETS: dict[str, dict] = {
    "cpu": {},  # dynamic shapes on onnxruntime (the default)
    "npu": {"target": "npu"},  # static graphs per row bucket (export/static.py)
    "web": {"embed": "quantized", "accuracy_level": 1},
}
