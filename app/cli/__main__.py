"""`python -m app.cli`: how the launcher starts each service as a child process."""

from app.cli.main import main

main()
