"""The Drafter protocol."""

from __future__ import annotations

from typing import Protocol, Sequence

from ..tree import DraftTree


class Drafter(Protocol):
    name: str

    def propose(self, context: Sequence[int], budget: int) -> DraftTree:
        """A tree of at most `budget` nodes continuing `context` (whose last token is the root)."""

    def observe(self, accepted: Sequence[int]) -> None:
        """The tokens the target accepted this step (drafts it agreed with, then its own token)."""

    def reset(self) -> None: ...
