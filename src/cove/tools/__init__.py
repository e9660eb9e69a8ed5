"""Tools the model may call, each switched on by the user: the registry, the policy, built-ins, MCP.

`registry` says what a tool is and runs one under caps; `policy` says which are on (and for
which hosts); `catalog.ToolCatalog(settings)` is every tool this cove knows (built-in and those
of the MCP servers in its config). The chat's tool loop (`cove.chat.tool_loop`) runs them.
"""
