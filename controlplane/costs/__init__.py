"""Cost sharing: cost pools, allocation keys, metering of reservations, the board's report."""
