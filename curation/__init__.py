"""The curation rules as pure functions over rows and vectors (no Prefect, no store): near-duplicate
search and deduplication (`near_duplicates`)."""
