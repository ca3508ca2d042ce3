"""The swarm's past: the event log read as a timeline (``status --at``, ``history``, ``replay``, ``export-log``).

Everything here reads; nothing publishes. ``source`` is where events come from (the bus's log or an exported
file), ``when`` turns what a person types (a sequence number, an ISO 8601 time, ``-15m``) into a point of it.
"""
