"""The low-level core every layer may use: tree paths, train-state pytrees, sharding,
checkpoints, partitioning, precision, reporting. It imports nothing else of jreid."""
