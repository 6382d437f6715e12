"""aggregator: collect feeds, deduplicate articles by share code, republish Atom."""

__version__ = "0.1.0"
PROJECT_URL = "https://github.com/aggregator-project/aggregator"
