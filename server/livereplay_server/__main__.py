"""`python -m livereplay_server` is the `livereplay` command."""

from .cli import main

main()
