"""Thin wrapper; the logic lives in lumen_mm.cli.smoke."""
from lumen_mm.cli.smoke import main

if __name__ == '__main__':
    main()
