"""What an entry is: share codes, identity rules, and dedup decisions."""
