"""The data folder's files and the database schema: CSV reading and validation, the import
into the database, the schema and its migrations."""
