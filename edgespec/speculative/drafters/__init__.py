"""Drafters propose token trees cheaply; the target verifies them in one pass.

The protocol (see `base.Drafter`): `propose(context, budget) -> DraftTree` where
`context` is every token so far (its last one, the root, is not in the target's
cache yet), `observe(accepted_tokens)` after each step, `reset()` per generation.
"""
