"""Running the pipeline unattended: noticing new source files, telling people about failed
runs, and noticing a source that stopped arriving."""
