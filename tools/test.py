"""Thin wrapper; the logic lives in lumen_mm.cli.test."""
from lumen_mm.cli.test import main

if __name__ == '__main__':
    main()
