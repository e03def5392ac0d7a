"""One module per `tinyasr` subcommand."""
