"""``python -m mathforge``: the command line (what launchers such as ``accelerate launch -m`` start)."""

from mathforge.cli import main

if __name__ == "__main__":
    main()
