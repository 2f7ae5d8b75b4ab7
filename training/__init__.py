"""Fine-tuning, evaluation and batch prediction."""
