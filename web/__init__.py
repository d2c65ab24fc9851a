"""tripwire's REST API and command line."""
