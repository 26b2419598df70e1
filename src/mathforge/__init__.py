"""mathforge: turn a general language model into a mathematical expert."""

__version__ = "0.1.0"
