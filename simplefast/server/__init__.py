"""Configuration, command line, worker supervisor, logging set-up."""
