"""Plain decode tok/s of an edgespec export vs llama.cpp on its source GGUF, 2 threads, interleaved.

Usage: python benchmarks/scripts/decode_vs_llamacpp.py EXPORT_DIR SOURCE.gguf (a stop-gap until `edgespec bench`)."""
import numpy as np, time, sys
from llama_cpp import Llama
from edgespec.export.manifest import read_manifest, manifest_config
from edgespec.runtimes.ort import OrtBackend
d, g = sys.argv[1], sys.argv[2]
m=read_manifest(d); c=manifest_config(m)
dec=OrtBackend(d+'/model.onnx', c, 1024, 2)
llm=Llama(model_path=g, n_ctx=1024, n_threads=2, n_batch=512, verbose=False)
ids=list(range(1000,1064)); N=64
def ours():
    dec.reset(); dec.forward(ids, logits_for=[63]); t=time.perf_counter()
    for i in range(N): dec.forward([2000+i], logits_for=[0])
    return N/(time.perf_counter()-t)
def theirs():
    llm.reset(); llm.eval(ids); t=time.perf_counter()
    for i in range(N): llm.eval([2000+i])
    return N/(time.perf_counter()-t)
r={'ours':[], 'llama.cpp':[]}
for rep in range(3):
    r['ours'].append(ours()); r['llama.cpp'].append(theirs())
print({k: round(float(np.median(v)),1) for k,v in r.items()}, 'ratio', round(np.median(r['ours'])/np.median(r['llama.cpp']),2))
