"""``python -m divrec`` = the ``divrec`` console script."""

from divrec.cli import main

main()
