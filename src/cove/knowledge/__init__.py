"""The knowledge base: collections of the user's own documents, parsed, chunked, embedded by
cove's engine, indexed (FTS5 and sqlite-vec), searched with citations, and kept in sync."""
