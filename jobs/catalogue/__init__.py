"""The archive's catalogue: records read from a CSV file and joined to the images."""
