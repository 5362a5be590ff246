"""Thin wrapper; the logic lives in lumen_mm.apis.webui."""
from lumen_mm.apis.webui import main

if __name__ == '__main__':
    main()
