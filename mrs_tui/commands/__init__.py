"""The subcommands of `mrs-tui`, one module each; `mrs_tui.cli` registers them."""
