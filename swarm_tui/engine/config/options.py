"""The one declaration of every configuration option: its type, default, environment variable, secret flag
and check.

``config.load_config`` validates a file and the environment against this table, and ``config.sections`` has
one typed field per entry (a unit test keeps the two in step). A new option is added to its part first
(``options_services`` or ``options_swarm``), with its default and check, then as a field of its section;
nothing else restates the default. The order here is the order ``swarm-tui config`` lists them in.
"""

from __future__ import annotations

from swarm_tui.engine.config.option import Option
from swarm_tui.engine.config.options_services import SERVICE_OPTIONS
from swarm_tui.engine.config.options_swarm import SWARM_OPTIONS

OPTIONS: list[Option] = [*SERVICE_OPTIONS, *SWARM_OPTIONS]

OPTION_BY_KEY = {o.key: o for o in OPTIONS}
