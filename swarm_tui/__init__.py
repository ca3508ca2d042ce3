"""swarm-tui: the control room of a hybrid LLM swarm."""

__version__ = "0.1.0"
