"""The Huntaze engine: plugins, storage, events and execution. Depends on ``dsl`` only."""
