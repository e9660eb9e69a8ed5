"""The library layer: `Cove` runs everything in this process, `RemoteCove` asks a running server."""
