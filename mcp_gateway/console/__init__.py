"""The admin web console at ``/console``: server-rendered pages over the same objects the REST API uses.

It never has rules of its own: task writes go through the API's validation, the playground through ``explain``,
revocation through ``TaskSessions``. Every asset is served from this package; no CDN, no build step.
"""
