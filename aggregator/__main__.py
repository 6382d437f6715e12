from aggregator.cli import entry_point

entry_point()
