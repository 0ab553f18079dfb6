"""``python -m genrobust``: the same as the ``genrobust`` command (for environments without the console script)."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="genrobust")
