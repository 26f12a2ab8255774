"""Where runs execute besides this process tree: ray (one Ray task per run). The local executor (one run at a
time, or --jobs N at once) and shards live in runner.py."""
