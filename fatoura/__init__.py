"""The `fatoura` command line."""
