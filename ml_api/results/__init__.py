"""Results: the experiment's record summed up in SQL, and the statistics document built from it."""
