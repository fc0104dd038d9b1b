"""Self-speculative decoding: draft trees, lossless verification, the decode loop, drafters."""
