"""RSS and decode speed of one export session with all layers vs a half-layer draft plan.

Usage: python benchmarks/scripts/layer_plan_rss.py EXPORT_DIR"""
import numpy as np, psutil, time, sys
from edgespec.export.manifest import read_manifest, manifest_config
from edgespec.runtimes.ort import OrtBackend
d=sys.argv[1]; m=read_manifest(d); c=manifest_config(m)
p=psutil.Process()
dec=OrtBackend(d+'/model.onnx', c, 1024, 2)
ids=list(range(1000,1064))
dec.forward(ids); rss_full=p.memory_info().rss
mask=np.ones(c.num_layers,bool); mask[c.num_layers//4:3*c.num_layers//4]=False
dec.forward([5,6,7,8], plan=mask); dec.rollback(4)
rss_plan=p.memory_info().rss
def speed(layer_mask=None, n=48):
    dec.reset(); dec.forward(ids); t=time.perf_counter()
    for i in range(n): dec.forward([2000+i], plan=layer_mask)
    return n/(time.perf_counter()-t)
print(f"RSS after full forward {rss_full/2**20:.0f} MiB; after also running a half-layer draft plan {rss_plan/2**20:.0f} MiB")
print(f"decode tok/s all layers {speed():.1f}; half layers skipped {speed(mask):.1f}")
