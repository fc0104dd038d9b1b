"""Export presets per deployment target, as data: ExportOptions fields a target changes.

`web` is for the phone/browser demo (android_demo/): onnxruntime-web's WebGPU backend cannot read an
fp16 embedding table on GPUs without `shader-f16` (headless Chromium's SwiftShader, many phones), so
the table is stored as fp32 — holding the fp16 table's values ("fp16-widened"), so the web export
computes the default export's numbers exactly (onnxruntime-node replays the golden traces on it) at the
price of 57 MB more to download for smollm2 (a plain fp32 table, dequantized afresh, changed smollm2's
first greedy token on the golden chat prompt).
Requantization recipes (smaller downloads) are meant to plug in here as more fields.
"""

TARGETS: dict[str, dict] = {
    "cpu": {},  # dynamic shapes on onnxruntime (the default)
    "npu": {"target": "npu"},  # static graphs per row bucket (export/static.py)
    "web": {"embed": "fp16-widened"},
}
