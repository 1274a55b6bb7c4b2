"""Event contracts, topic definitions, keys, tokens and settings: the one source of truth.

Imports nothing from producers, processors or sinks.
"""
