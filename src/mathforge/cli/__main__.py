"""``python -m mathforge.cli``: the CLI without the console script (e.g. under ``torchrun -m``)."""

from mathforge.cli import main

main()
