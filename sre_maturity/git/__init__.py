"""Git in the data folder: commits, repository files, the merge drivers and the diff text."""
