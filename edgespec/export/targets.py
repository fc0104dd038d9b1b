"""Export presets per deployment target, as data: ExportOptions fields a target changes.

`web` is for the phone/browser demo (android_demo/), where the download is the cost: the embedding is
"tied", its rows read from the lm_head's own int4 weight (quant.linear.TiedEmbedding), so the export holds
the vocabulary table once, quantized, and the download is little more than the bytes read per token
(smollm2 97 MB, qwen 0.5b 357 MB, against 129 / 510 with a separate int8 table; android_demo/README.md). A GPU
without `shader-f16` (headless Chromium's SwiftShader, many phones) cannot read an fp16 table in
onnxruntime-web's WebGPU backend; the tied rows are dequantized in fp32 with standard ops. "quantized"
(the GGUF's own levels, int8) and "fp16-widened" are still choices. onnxruntime-web's WASM (and WebGPU)
kernels compute MatMulNBits with fp32 activations whatever the accuracy level says, so the web export
declares level 1 (fp32 activations): onnxruntime on a CPU then computes what the browser computes
(measured: smollm2's first golden row differs by 0.42 between level 4 on x86 and WASM, and by < 1e-4
between level 1 and WASM), and its own golden traces (tests/golden/smollm2-135m-web.json) hold for the page.
It keeps the layer plans the CPU default dropped (graph 6): the JS engine's layer-skip and S3D drafters run
on them in the browser (android_demo/web-test); whether they pay on a phone's GPU is not measured.
"""

TARGETS: dict[str, dict] = {
    "cpu": {},  # dynamic shapes on onnxruntime (the default)
    "npu": {"target": "npu"},  # static graphs per row bucket (export/static.py)
    "web": {"embed": "tied", "accuracy_level": 1, "layer_plans": True},
}
