"""The model store: blobs by sha256, manifests by name, recipes, pulls and GGUF metadata."""
