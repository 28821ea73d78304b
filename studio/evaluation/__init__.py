"""Evaluate & Predict: eval loss, perplexity, batched predictions, BLEU-4 and ROUGE, base vs adapter."""
