"""What `rmforge export` (tasks/export.py) writes, beside its Prefect task: each dataset's rows
(`datasets`), the files and the folder an export owns (`files`), where the data came from
(`provenance`) and the dataset card (`card`). The datasets themselves are specified in
schemas/exports.py."""
