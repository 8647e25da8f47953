"""python -m sqcodec"""

from sqcodec.cli import main

main()
