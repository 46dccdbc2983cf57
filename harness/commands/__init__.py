"""One module per `kvmconf` command group."""
