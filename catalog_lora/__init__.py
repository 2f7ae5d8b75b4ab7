"""catalog-lora core: one definition of prompts, labels, records and model loading."""
