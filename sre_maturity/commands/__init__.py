"""The commands: one module per command, each with ``run(options, ctx)``; none sees argparse."""
