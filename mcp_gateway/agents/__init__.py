"""Task Agents: named, versioned agent definitions that the gateway runs itself, as their caller.

An agent's runtime configuration lives on immutable numbered revisions; a run acts as the identity that started it
and calls tools only through ``Proxy.call_tool``, so visibility, CEL policies and audit apply to every inner call
exactly as to a human-driven agent's. Nothing in this package talks to an upstream or a model except through those
two doors (the proxy, and the official ``openai`` client in ``models.py``).
"""
