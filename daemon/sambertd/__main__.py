"""``python -m sambertd`` is the ``sambertd`` command."""

from sambertd.cli import main

main()
