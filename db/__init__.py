"""MongoDB bootstrap (collections, $jsonSchema validators, indexes) and the mongosh queries."""
