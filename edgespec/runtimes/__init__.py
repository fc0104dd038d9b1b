"""Backends behind one contract (base.Backend): onnxruntime (ort.py), llama.cpp (llamacpp.py) and the
numpy reference (reference.py), plus backend timing (timing.py). Opening one for a model (export on
first use, --backend auto) is edgespec.loader's job."""
