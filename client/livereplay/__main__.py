"""`python -m livereplay` is the `livereplay` command."""

from livereplay.cli import main

main()
