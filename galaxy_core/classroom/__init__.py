"""classroom stage: a class of students classifies galaxies and compares itself with the Galaxy
Zoo volunteers and the network (join codes, galaxy sets from the test split, SQLite storage)."""
