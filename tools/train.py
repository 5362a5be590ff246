"""Thin wrapper; the logic lives in lumen_mm.cli.train."""
from lumen_mm.cli.train import main

if __name__ == '__main__':
    main()
