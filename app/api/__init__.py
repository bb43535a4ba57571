"""The REST API: routes, their request guards, the error mapping and the response shapes.

The application that serves it (with the dashboard) is built by `app.server.create_app`.
"""
