"""`python -m livereplay_server [FLAGS]` runs the daemon, as `livereplay serve` does."""

from .cli import main

main()
