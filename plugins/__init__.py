"""Built-in plugins. They register through entry points, exactly as a third party's do."""
