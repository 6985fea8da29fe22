"""The SQLite catalogue: connections and transactions, schema, queries, stat cache."""
