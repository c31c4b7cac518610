"""Subcommands of the `deepgen` CLI, one module each (see deepgen/cli.py for the contract)."""
