"""Export presets per deployment target, as data: ExportOptions fields a target changes.

`web` is for the phone/browser demo (android_demo/): onnxruntime-web's WebGPU backend cannot read an
fp16 embedding table on GPUs without `shader-f16` (headless Chromium's SwiftShader, many phones), so
the table is stored as fp32. Everything else stays the default export's (same weights and levels),
so the web export decodes the default export's tokens (the golden traces) up to near-ties.
Requantization recipes (smaller downloads) are meant to plug in here as more fields.
"""

TARGETS: dict[str, dict] = {
    "default": {},
    "web": {"embed": "fp32"},
}
