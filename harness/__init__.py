"""babelmerge: benchmark harness and static leaderboard for merging multilingual language models."""

__version__ = "0.1.0"
