"""python -m aggregator: the same command line as `aggregator`."""

from aggregator.cli.main import entry_point

if __name__ == "__main__":  # worker processes (multiprocessing spawn) import this too
    entry_point()
