"""The HTTP surface: blueprints, body parsing, the error table, the JSON provider, the predict lane."""
