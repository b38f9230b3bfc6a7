"""The ``gpuledger`` command: one entry point composing the subcommands of each package."""
