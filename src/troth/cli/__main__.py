"""``python -m troth.cli``: the ``troth`` command (the tests and examples start servers this way)."""

from troth.cli import main

main()
