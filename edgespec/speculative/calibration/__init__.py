"""Calibration and its persistence, apart from the pure decoding core: the layer-skip search
(layerskip.py, stored in the export's manifest) and the verify cost curve (costs.py, cached
under EDGESPEC_CACHE/costs). They measure on a backend, take minutes at most once per model,
machine and thread count, and hand the core plain records (a skip set, a CostModel)."""
