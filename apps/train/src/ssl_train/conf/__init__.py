"""The packaged Hydra configs of ssl-train (config groups and examples)."""
