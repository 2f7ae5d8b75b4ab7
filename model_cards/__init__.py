"""Model and dataset cards, and publishing to the Hugging Face Hub."""
