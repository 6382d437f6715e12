"""Writing the published feeds (Atom, JSON Feed), listings, and posts."""
