"""tinyasr.scripts: the `tinyasr` command line."""
