"""Training of trained self-drafters (PPD prompt tokens) with torch on the CPU: the `[train]` extra.

Only this package imports torch; the runtime never does (tests/test_dependencies.py checks)."""
