"""`edgespec bench`: runner.py loads the engines and times them, worker.py runs one engine in its own process,
report.py and costs.py summarise. Only the constants the CLI's parser needs live here (its start stays light)."""

# how the engines take turns (runner.turn_groups): all loaded at once, or one family at a time
TURNS = ("all", "family")
