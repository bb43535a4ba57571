"""The `trialforge` command and what it runs: the subcommands, the demo, the process launcher."""
