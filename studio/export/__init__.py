"""Export: merge an adapter into its base as a standard transformers model folder."""
