"""Who may do what: token roles, member scopes, and the one policy every edge asks."""
