"""CoT and TIR solving: questions or prompts in, :class:`Trajectory` lists out."""

from mathforge.solve.code import trailing_python_block
from mathforge.solve.loop import MODES, solve, solve_prompts
from mathforge.solve.trajectory import Segment, Trajectory

__all__ = ["MODES", "Segment", "Trajectory", "solve", "solve_prompts", "trailing_python_block"]
