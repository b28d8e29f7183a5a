"""The `luzia` command line."""
