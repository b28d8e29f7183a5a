"""The agent: one per GPU host; takes jobs from the broker and runs them."""
