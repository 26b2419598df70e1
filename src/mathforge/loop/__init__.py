"""The self-improvement loop: iteration 0 on gold data, then rounds of RM -> RS -> SFT -> GRPO,
each stage evaluated on held-out problems against the base (``mathforge loop``)."""

from mathforge.loop.config import PRESETS, LoopConfig, load_config
from mathforge.loop.runner import Loop

__all__ = ["PRESETS", "Loop", "LoopConfig", "load_config"]
