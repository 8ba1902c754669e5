"""Upstream MCP servers: how each transport is opened, the long-lived connection, and the catalog merging them."""
