"""Wire formats <-> the canonical model. One module per API, each with the same six translations:
request in/out, response in/out, stream in/out. The gateway's edges (what the client speaks) and its
upstream providers (what the model speaks) both use them, so any format can be served by any provider."""
