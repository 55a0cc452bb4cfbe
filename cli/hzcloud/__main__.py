"""`python -m hzcloud`."""

from hzcloud.app import main

main()
