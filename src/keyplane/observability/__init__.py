"""What operators and orchestrators ask of a running Keyplane: ``/metrics`` (Prometheus)
and ``/readyz`` (may it take traffic?). ``/healthz``, mere liveness, stays in the app."""
