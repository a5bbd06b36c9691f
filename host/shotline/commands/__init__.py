"""Command-line handlers, one module per ``shotline`` subcommand (see ``shotline.cli``)."""
