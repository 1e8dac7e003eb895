"""What every command shares: the error family, the command context, prompts, names, the
folder lock and Ctrl-C handling."""
