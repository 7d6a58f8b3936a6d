"""The deploy engine: runs, their records, and the one adapter to ansible-runner."""
