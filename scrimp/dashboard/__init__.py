"""The dashboard: a page served by the gateway (`/dashboard`, drawn with the vendored Chart.js) over the ledger's
roll-ups, and a Grafana dashboard (grafana.json) over the gateway's Prometheus metrics."""
