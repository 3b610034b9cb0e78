"""The glue between reqo's roles: the wire they talk over, the writer's client, the shared
committed sequence number, and the supervisor that runs the roles as one process group."""
