"""Sans-I/O core: ordering, presence, streams, sessions and limits as plain state machines.

Nothing here awaits, opens a socket or reads a clock; time and ids are passed in.
"""
