"""Pipeline wiring, configs and runners."""
