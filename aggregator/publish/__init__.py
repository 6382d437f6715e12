"""Writing the published feeds (a registry of output formats: Atom, JSON Feed, RSS 2.0),
listings, and posts."""
