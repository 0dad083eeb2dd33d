"""``python -m vecstore.cli``: the ``vec`` command without the console script (subprocess tests use it)."""

from vecstore.cli import main

main()
