"""argparse types for the front ends' numeric options: a bad value is an error that names it and what was
expected (`edgespec bench --reps 0`: "--reps: 0: expected a positive count"), never a traceback later."""

from __future__ import annotations

import argparse


def int_at_least(minimum: int, expected: str):
    """An int >= minimum, else an error naming the value and what was expected."""
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}: expected {expected}")
        return value
    parse.__name__ = "integer"  # argparse names the type in "invalid integer value: 'x'"
    return parse


positive_tokens = int_at_least(1, "a positive number of tokens")
count = int_at_least(1, "a positive count")
draft_budget = int_at_least(0, "a number of draft tokens, >= 0")
threads = int_at_least(0, "a number of threads, or 0 for every physical core")


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value}: expected a TCP port, 0-65535")
    return value
