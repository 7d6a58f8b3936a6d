"""The fleet: members, hosts, the app catalogue and each member's stack."""
