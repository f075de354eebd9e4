"""The grouping job: plan → read blocks of vectors → map them through the exact engine →
write the changed lists, per space."""
