"""Models: the registry of packaged models (embedded) and loading any model id or path (load)."""
