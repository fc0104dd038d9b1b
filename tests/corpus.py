"""Offline text for parity tests: Python's own stdlib sources and pydoc's English prose."""

from __future__ import annotations

import inspect


def stdlib_code(chars: int = 4000) -> str:
    import textwrap, json.decoder  # noqa: E401  (sources only)

    return (inspect.getsource(textwrap) + inspect.getsource(json.decoder))[:chars]


def pydoc_prose(chars: int = 4000) -> str:
    from pydoc_data import topics

    return "\n\n".join(topics.topics[k] for k in sorted(topics.topics))[:chars]
