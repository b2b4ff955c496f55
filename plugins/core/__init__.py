"""The core triggers and actions. They use only ``engine.plugin_api`` and are registered
in our ``pyproject.toml`` entry points, as any third-party plugin would be."""
