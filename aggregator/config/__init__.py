"""Reading and checking the config file, and editing it in place."""
