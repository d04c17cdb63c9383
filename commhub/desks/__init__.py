"""Service desks: a queue of visitors, the agents who take them, and the private sessions
between them (issue 12). The protocol is in signalling/PROTOCOL.md ("Desks")."""
