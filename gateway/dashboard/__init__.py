"""The admin dashboard's server side: sessions, aggregate queries, views of the ledger."""
